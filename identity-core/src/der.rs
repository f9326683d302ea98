//! The few DER reads a certificate credential needs: the parts of an X.509 certificate
//! that name its key. Never panics; malformed input gives `None`.

/// One DER element: its tag and its content.
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and what follows.
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first_len = *input.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (first_len as usize, 2)
    } else {
        let count = (first_len & 0x7f) as usize;
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &input[header..end],
        },
        &input[end..],
    ))
}

/// The public key bits of a certificate: the content of the `subjectPublicKey` BIT
/// STRING (an RSAPublicKey for RSA, the SEC1 point for EC), without the unused-bits byte.
pub(crate) fn certificate_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = read(cert)?;
    let (tbs, _) = read(certificate.content)?;
    let mut rest = tbs.content;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (field, next) = read(rest)?;
        fields.push(field);
        rest = next;
    }
    // [0] version is optional; then serial, signature, issuer, validity, subject, SPKI.
    let skip = usize::from(fields.first()?.tag == 0xa0);
    let spki = fields.get(skip + 5)?;
    let (_algorithm, rest) = read(spki.content)?;
    let (bits, _) = read(rest)?;
    if bits.tag != 0x03 {
        return None;
    }
    bits.content.get(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_gives_none() {
        for bad in [
            &b""[..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 1],
            &[0x30, 0x00],
        ] {
            assert!(certificate_public_key(bad).is_none());
        }
    }

    #[test]
    fn long_lengths_are_read() {
        let mut input = vec![0x04, 0x82, 0x01, 0x00];
        input.extend(std::iter::repeat_n(7u8, 256));
        let (tlv, rest) = read(&input).unwrap();
        assert_eq!(tlv.content.len(), 256);
        assert!(rest.is_empty());
    }
}
