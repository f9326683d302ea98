//! Just enough HTML reading for a scripted browser: tags and their attributes, forms,
//! `meta refresh` targets. Not a general parser; it reads the pages of the testkit, of
//! the sample apps and of the interop peers.

use url::Url;

/// A start tag: its attributes (names lowercased, values
/// entity-decoded), and the byte range it spans in the document.
#[derive(Clone, Debug)]
pub(crate) struct Tag {
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tag {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes HTML character references (`&amp;`, `&#60;`, `&#x2F;`, ...).
pub fn unescape(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// Every start tag named `name` (case-insensitive), in document order.
pub(crate) fn tags(html: &str, name: &str) -> Vec<Tag> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{}", name.to_ascii_lowercase());
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&needle) {
        let start = from + pos;
        let after = start + needle.len();
        let boundary = lower[after..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_whitespace() || c == '>' || c == '/');
        if !boundary {
            from = after;
            continue;
        }
        let (attrs, end) = parse_attrs(html, after);
        out.push(Tag { attrs, start, end });
        from = end.max(after);
    }
    out
}

/// Reads attributes from `at` up to the closing `>`; returns them and the index after `>`.
fn parse_attrs(html: &str, at: usize) -> (Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut i = at;
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (attrs, bytes.len());
        }
        if bytes[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let v_start = i + 1;
                let mut j = v_start;
                while j < bytes.len() && bytes[j] != quote {
                    j += 1;
                }
                i = (j + 1).min(bytes.len());
                &html[v_start..j.min(bytes.len())]
            } else {
                let v_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                &html[v_start..i]
            };
            attrs.push((name, unescape(value)));
        } else if !name.is_empty() {
            attrs.push((name, String::new()));
        } else {
            i += 1;
        }
    }
}

/// The target of `<meta http-equiv="refresh" content="0; URL=...">`, resolved against `base`.
pub(crate) fn meta_refresh(html: &str, base: &Url) -> Option<Url> {
    tags(html, "meta").into_iter().find_map(|t| {
        if !t
            .attr("http-equiv")
            .is_some_and(|v| v.eq_ignore_ascii_case("refresh"))
        {
            return None;
        }
        let content = t.attr("content")?;
        let lower = content.to_ascii_lowercase();
        let at = lower.find("url=")?;
        let target = content[at + 4..]
            .trim()
            .trim_matches(|c| c == '\'' || c == '"');
        base.join(target).ok()
    })
}

/// The `href` of the element with `id`, resolved against `base`.
pub(crate) fn link_by_id(html: &str, id: &str, base: &Url) -> Option<Url> {
    tags(html, "a")
        .into_iter()
        .find(|t| t.attr("id") == Some(id))
        .and_then(|t| t.attr("href").and_then(|h| base.join(h).ok()))
}

/// Every `href` of `<a>` elements, resolved against `base`.
pub(crate) fn links(html: &str, base: &Url) -> Vec<Url> {
    tags(html, "a")
        .into_iter()
        .filter_map(|t| t.attr("href").and_then(|h| base.join(h).ok()))
        .collect()
}

/// A button of a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// `id` attribute.
    pub id: Option<String>,
    /// `name` attribute (submitted with `value` when pressed).
    pub name: Option<String>,
    /// `value` attribute.
    pub value: String,
}

/// An HTML form read from a page, ready to be filled in and submitted.
#[derive(Clone, Debug)]
pub struct Form {
    /// Where it posts (resolved).
    pub action: Url,
    /// `get` or `post` (lowercase).
    pub method: String,
    /// The form's `id`, if any.
    pub id: Option<String>,
    /// The fields in document order (`input`, `textarea` values; unchecked boxes omitted).
    pub fields: Vec<(String, String)>,
    /// Submit buttons that belong to the form (inside it, or naming it with `form=`).
    pub buttons: Vec<Button>,
    pressed: Option<(String, String)>,
}

impl Form {
    /// Sets (or adds) a field.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// The value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the form has a field named `name`.
    pub fn has_field(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Presses the button with this `id` or, failing that, this `name`/`value`: its
    /// name and value are submitted with the fields. Returns whether a button matched.
    pub fn press(&mut self, id_or_value: &str) -> bool {
        let button = self
            .buttons
            .iter()
            .find(|b| b.id.as_deref() == Some(id_or_value))
            .or_else(|| {
                self.buttons
                    .iter()
                    .find(|b| b.value == id_or_value || b.name.as_deref() == Some(id_or_value))
            })
            .cloned();
        match button {
            Some(b) => {
                self.pressed = b.name.map(|n| (n, b.value));
                true
            }
            None => false,
        }
    }

    /// The fields that a submission sends (with the pressed button, if it has a name).
    pub fn submission(&self) -> Vec<(String, String)> {
        let mut out = self.fields.clone();
        if let Some(p) = &self.pressed {
            out.push(p.clone());
        }
        out
    }

    /// Whether a button with this `id` belongs to the form.
    pub fn has_button(&self, id: &str) -> bool {
        self.buttons.iter().any(|b| b.id.as_deref() == Some(id))
    }
}

/// Every form of a page.
pub(crate) fn forms(html: &str, base: &Url) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let all_buttons: Vec<Tag> = tags(html, "button")
        .into_iter()
        .chain(tags(html, "input").into_iter().filter(|t| {
            t.attr("type")
                .is_some_and(|ty| ty.eq_ignore_ascii_case("submit"))
        }))
        .collect();
    let mut out = Vec::new();
    for tag in tags(html, "form") {
        let close = lower[tag.end..]
            .find("</form")
            .map(|p| tag.end + p)
            .unwrap_or(html.len());
        let inner = &html[tag.end..close];
        let action = tag
            .attr("action")
            .filter(|a| !a.is_empty())
            .and_then(|a| base.join(a).ok())
            .unwrap_or_else(|| base.clone());
        let method = tag.attr("method").unwrap_or("get").to_ascii_lowercase();
        let id = tag.attr("id").map(str::to_owned);
        let mut fields = Vec::new();
        for input in tags(inner, "input") {
            let ty = input.attr("type").unwrap_or("text").to_ascii_lowercase();
            let Some(name) = input.attr("name") else {
                continue;
            };
            match ty.as_str() {
                "submit" | "button" | "image" | "reset" | "file" => continue,
                "checkbox" | "radio" if input.attr("checked").is_none() => continue,
                _ => {}
            }
            fields.push((
                name.to_owned(),
                input.attr("value").unwrap_or_default().to_owned(),
            ));
        }
        for ta in tags(inner, "textarea") {
            if let Some(name) = ta.attr("name") {
                let close = inner[ta.end..]
                    .to_ascii_lowercase()
                    .find("</textarea")
                    .map(|p| ta.end + p)
                    .unwrap_or(inner.len());
                fields.push((name.to_owned(), unescape(&inner[ta.end..close])));
            }
        }
        let buttons = all_buttons
            .iter()
            .filter(|b| {
                let inside = b.start > tag.end && b.start < close;
                let named = match (b.attr("form"), id.as_deref()) {
                    (Some(f), Some(i)) => f == i,
                    _ => false,
                };
                (inside && b.attr("form").is_none()) || named
            })
            .filter(|b| {
                b.attr("type")
                    .is_none_or(|t| t.eq_ignore_ascii_case("submit"))
            })
            .map(|b| Button {
                id: b.attr("id").map(str::to_owned),
                name: b.attr("name").map(str::to_owned),
                value: b.attr("value").unwrap_or_default().to_owned(),
            })
            .collect();
        out.push(Form {
            action,
            method,
            id,
            fields,
            buttons,
            pressed: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meta_refresh_forms_and_buttons_outside_forms() {
        let base = Url::parse("http://127.0.0.1:1/x/").unwrap();
        let html = "<html><head><META http-equiv='Refresh' content=\"0; URL=https://p.example/a?x=1&amp;y=%2F\"></head>\
            <body><form method=post action=/op/session/end/confirm id=\"op.logoutForm\"><input type=hidden name=xsrf value=\"a&quot;b\"></form>\
            <button autofocus type=\"submit\" form=\"op.logoutForm\" value=\"yes\" name=\"logout\">Yes</button>\
            <form action=\"next\"><input name=\"u\" value=\"v\"><input type=checkbox name=c><button id=go>Go</button></form>\
            <a id=\"sign_in\" href=\"/login?a=1&amp;b=2\">x</a></body></html>";
        assert_eq!(
            meta_refresh(html, &base).unwrap().as_str(),
            "https://p.example/a?x=1&y=%2F"
        );
        let forms = forms(html, &base);
        assert_eq!(forms.len(), 2);
        let mut logout = forms[0].clone();
        assert_eq!(
            logout.action.as_str(),
            "http://127.0.0.1:1/op/session/end/confirm"
        );
        assert_eq!(logout.get("xsrf"), Some("a\"b"));
        assert!(logout.press("yes"));
        assert!(logout
            .submission()
            .contains(&("logout".into(), "yes".into())));
        assert_eq!(forms[1].action.as_str(), "http://127.0.0.1:1/x/next");
        assert_eq!(forms[1].method, "get");
        assert!(!forms[1].has_field("c"));
        assert!(forms[1].has_button("go"));
        assert_eq!(
            link_by_id(html, "sign_in", &base).unwrap().as_str(),
            "http://127.0.0.1:1/login?a=1&b=2"
        );
    }
}
