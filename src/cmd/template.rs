//! `inspect --format`: the part of Go's templates docker users write against inspect's
//! JSON: text with `{{.Path.To.Field}}`, `{{json .Path}}` (or `{{json .}}`) and
//! `{{index .Map "key"}}` (for keys with dots, as labels have). A string prints as it is,
//! a number or boolean as JSON, an object or array as JSON; a field the object lacks
//! prints `<no value>`, as Go's does. Anything else is an error naming it.

use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// A path of fields (empty: the object itself), then map keys of `index`; JSON or not.
    Lookup {
        path: Vec<String>,
        keys: Vec<String>,
        json: bool,
    },
}

/// A parsed template.
#[derive(Debug)]
pub struct Template(Vec<Piece>);

fn bad(t: &str, why: impl std::fmt::Display) -> String {
    format!("--format {t:?}: {why}")
}

fn path_of(t: &str, p: &str) -> Result<Vec<String>, String> {
    let rest = p
        .strip_prefix('.')
        .ok_or_else(|| bad(t, format!("{p}: a field starts with '.'")))?;
    Ok(rest
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

impl Template {
    /// Parses `t` (`\t` and `\n` as tab and newline).
    pub fn parse(t: &str) -> Result<Template, String> {
        let text = t.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                pieces.push(Piece::Text(rest[..i].to_string()));
            }
            let end = rest[i..]
                .find("}}")
                .ok_or_else(|| bad(t, "a {{ without its }}"))?;
            let inner = rest[i + 2..i + end].trim();
            let words: Vec<&str> = inner.split_whitespace().collect();
            let piece = match words.as_slice() {
                [p] => Piece::Lookup {
                    path: path_of(t, p)?,
                    keys: Vec::new(),
                    json: false,
                },
                ["json", p] => Piece::Lookup {
                    path: path_of(t, p)?,
                    keys: Vec::new(),
                    json: true,
                },
                ["index", p, keys @ ..] if !keys.is_empty() => Piece::Lookup {
                    path: path_of(t, p)?,
                    keys: keys
                        .iter()
                        .map(|k| {
                            k.strip_prefix('"')
                                .and_then(|k| k.strip_suffix('"'))
                                .map(str::to_string)
                                .ok_or_else(|| bad(t, format!("index key {k} must be quoted")))
                        })
                        .collect::<Result<_, _>>()?,
                    json: false,
                },
                _ => {
                    return Err(bad(
                        t,
                        format!(
                            "{{{{{inner}}}}}: known are {{{{.Field}}}}, {{{{json .Field}}}}, \
                             {{{{index .Map \"key\"}}}}"
                        ),
                    ))
                }
            };
            pieces.push(piece);
            rest = &rest[i + end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    /// The template filled from `v`.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Lookup { path, keys, json } => {
                    let found = path
                        .iter()
                        .chain(keys)
                        .try_fold(v, |cur, k| cur.get(k.as_str()));
                    match (found, json) {
                        (None, _) => out.push_str("<no value>"),
                        (Some(x), true) => out.push_str(&x.to_string()),
                        (Some(Value::String(s)), false) => out.push_str(s),
                        (Some(Value::Null), false) => out.push_str("<nil>"),
                        (Some(x), false) => out.push_str(&x.to_string()),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_json_and_index_as_go_prints_them() {
        let v = serde_json::json!({
            "Name": "web", "State": {"Status": "running", "Pid": 42, "Running": true},
            "Config": {"Labels": {"com.example.tier": "db"}, "Env": ["A=1"]}, "Gone": null
        });
        let r = |t: &str| Template::parse(t).unwrap().render(&v);
        assert_eq!(
            r("{{.Name}} {{.State.Status}}\\t{{.State.Pid}}"),
            "web running\t42"
        );
        assert_eq!(r("{{.State.Running}}"), "true");
        assert_eq!(r("{{json .Config.Env}}"), r#"["A=1"]"#);
        assert_eq!(r(r#"{{index .Config.Labels "com.example.tier"}}"#), "db");
        assert_eq!(r("{{.Nope}}|{{.Gone}}"), "<no value>|<nil>");
        assert!(r("{{json .}}").starts_with('{'));
        assert!(Template::parse("{{.Name").is_err());
        assert!(Template::parse("{{range .Mounts}}").is_err());
        assert!(Template::parse("{{index .Config.Labels tier}}").is_err());
    }
}
