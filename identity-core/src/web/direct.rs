//! The signed-in user read straight from a stored session record
//! ([`WebAuth::user_in_backend`](super::WebAuth::user_in_backend)).

use crate::User;

/// What a direct read of a session record found: the signed-in user, with nothing else
/// to do for this request but, when [`touch_due`](Self::touch_due) says so, the
/// idle-timeout touch.
#[derive(Clone, Debug)]
pub struct BackendUser {
    /// The signed-in user.
    pub user: User,
    /// Whether the session must be written back with its expiry pushed
    /// ([`SessionPolicy::needs_touch`](crate::sessions::SessionPolicy::needs_touch)), as
    /// of the read.
    pub touch_due: bool,
}

/// The text form of a 128-bit session id: URL-safe base64 without padding of its 16
/// bytes, as tower-sessions writes its ids, made on the stack (22 characters).
#[derive(Clone, Copy)]
pub struct SessionIdText([u8; 22]);

impl SessionIdText {
    /// The text of the id whose bytes are `bytes` (tower-sessions: the id's
    /// little-endian bytes).
    pub fn new(bytes: [u8; 16]) -> Self {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = [0u8; 22];
        let sextet = |n: u32| ALPHABET[(n & 63) as usize];
        for (i, group) in bytes.chunks(3).enumerate() {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (j, b)| n | u32::from(*b) << (16 - 8 * j));
            let o = &mut out[i * 4..];
            o[0] = sextet(n >> 18);
            o[1] = sextet(n >> 12);
            if group.len() > 1 {
                o[2] = sextet(n >> 6);
            }
            if group.len() > 2 {
                o[3] = sextet(n);
            }
        }
        SessionIdText(out)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only alphabet characters were written: ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for SessionIdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A session id is a bearer secret.
        f.write_str("SessionIdText(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn session_id_text_is_url_safe_base64_without_padding() {
        let mut bytes = [0u8; 16];
        for seed in 0u32..2000 {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 3) >> 7) as u8
                    ^ (i as u8).wrapping_mul(37);
            }
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(SessionIdText::new(bytes).as_str(), expected);
        }
        assert_eq!(
            SessionIdText::new([0xff; 16]).as_str(),
            "_____________________w"
        );
        assert_eq!(
            SessionIdText::new([0; 16]).as_str(),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
    }
}
