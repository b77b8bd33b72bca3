//! Text shapes that folders which must not import each other share: shell-like words
//! (a Containerfile's arguments, `iptables -S` rules) and docker's rule for names
//! (containers, networks, volumes).

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
pub fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = it.next() {
                    cur.push(n);
                    any = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        && name.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rule() {
        assert!(valid_name("web"));
        assert!(valid_name("a.b-c_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn words_unquote_and_unescape() {
        assert_eq!(words("a 'b c' \"d\\\"e\""), ["a", "b c", "d\"e"]);
        assert_eq!(words("  "), Vec::<String>::new());
        assert_eq!(words("x''"), ["x"]);
    }
}
