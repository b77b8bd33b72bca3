//! The Containerfile grammar: comments, the `escape` directive, line continuations,
//! instructions with `--flag=value` options and their exec (JSON) or shell forms, and
//! docker's variable substitution (`$V`, `${V}`, `${V:-word}`, `${V:+word}`).

use super::error::BuildError;
use crate::text::words;

/// An instruction's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`.
    Exec(Vec<String>),
    /// Everything after the keyword and flags, as written.
    Shell(String),
}

/// One instruction of a Containerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// Line where it starts (1-based).
    pub line: usize,
    /// The keyword, upper case.
    pub keyword: String,
    /// `--name=value` options before the arguments.
    pub flags: Vec<(String, String)>,
    /// The arguments.
    pub args: Args,
    /// `COPY <<EOF /dest`: the files written inline, by their terminator word.
    pub inline: Vec<Inline>,
}

/// A file a COPY writes from a heredoc (`COPY <<EOF /dest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inline {
    /// The terminator word, which names the file when the destination is a directory.
    pub word: String,
    /// The lines up to the terminator.
    pub body: String,
    /// `<<"EOF"` or `<<'EOF'`: the body is taken as written, without substitution.
    pub quoted: bool,
}

impl Instruction {
    /// The instruction as docker prints it in its steps and history.
    pub fn text(&self) -> String {
        let flags: String = self
            .flags
            .iter()
            .map(|(k, v)| format!("--{k}={v} "))
            .collect();
        match &self.args {
            Args::Exec(v) => format!(
                "{} {flags}{}",
                self.keyword,
                serde_json::to_string(v).unwrap_or_default()
            ),
            Args::Shell(s) => {
                let inline: String = (self.inline.iter())
                    .map(|h| format!("\n{}\n{}", h.body, h.word))
                    .collect();
                format!("{} {flags}{s}{inline}", self.keyword)
            }
        }
    }

    /// The value of flag `name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "LABEL",
    "EXPOSE",
    "ENTRYPOINT",
    "CMD",
    "SHELL",
    "VOLUME",
    "STOPSIGNAL",
    "MAINTAINER",
    "HEALTHCHECK",
    "ONBUILD",
];

/// Parses a Containerfile (`name` is used in errors).
pub fn parse(name: &str, text: &str) -> Result<Vec<Instruction>, BuildError> {
    let mut escape = '\\';
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives: `# key=value` lines before anything else.
    while let Some((_, l)) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        match d.trim().split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("escape") => {
                escape = match v.trim() {
                    "`" => '`',
                    "\\" => '\\',
                    other => {
                        return Err(BuildError::parse(
                            name,
                            1,
                            format!("escape {other}: \\ or `"),
                        ))
                    }
                };
                lines.next();
            }
            Some((k, _)) if k.trim().chars().all(|c| c.is_ascii_alphanumeric()) => {
                lines.next();
            }
            _ => break,
        }
    }
    let mut out = Vec::new();
    while let Some((i, l)) = lines.next() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let start = i + 1;
        let mut joined = String::new();
        let mut cur = l.to_string();
        loop {
            let trimmed = cur.trim_end();
            match trimmed.strip_suffix(escape) {
                Some(head) => {
                    joined.push_str(head);
                    // The next line that isn't a comment continues this one.
                    let mut next = None;
                    for (_, n) in lines.by_ref() {
                        if !n.trim_start().starts_with('#') {
                            next = Some(n.to_string());
                            break;
                        }
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    joined.push_str(trimmed);
                    break;
                }
            }
        }
        let mut ins = instruction(name, start, joined.trim())?;
        // Heredocs (`RUN <<EOF`, `COPY <<EOF /f`): the lines up to the terminator.
        if let Some((word, strip_tabs)) = heredoc(&ins) {
            let mut body = Vec::new();
            let mut closed = false;
            for (_, n) in lines.by_ref() {
                let line = if strip_tabs {
                    n.trim_start_matches('\t')
                } else {
                    n
                };
                if line == word {
                    closed = true;
                    break;
                }
                body.push(line.to_string());
            }
            if !closed {
                return Err(BuildError::parse(
                    name,
                    start,
                    format!("heredoc <<{word}: no line {word} ends it"),
                ));
            }
            with_heredoc(name, start, &mut ins, word, &body)?;
        }
        out.push(ins);
    }
    Ok(out)
}

fn instruction(name: &str, line: usize, s: &str) -> Result<Instruction, BuildError> {
    let (kw, mut rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(BuildError::parse(
            name,
            line,
            format!("unknown instruction {kw}"),
        ));
    }
    rest = rest.trim_start();
    let mut flags = Vec::new();
    if matches!(
        keyword.as_str(),
        "FROM" | "COPY" | "ADD" | "RUN" | "HEALTHCHECK"
    ) {
        while let Some(f) = rest.strip_prefix("--") {
            let (flag, after) = f.split_once(char::is_whitespace).unwrap_or((f, ""));
            let (k, v) = flag.split_once('=').unwrap_or((flag, "true"));
            flags.push((k.to_string(), v.to_string()));
            rest = after.trim_start();
        }
    }
    check_flags(name, line, &keyword, &flags)?;
    let args = match rest.starts_with('[') {
        true => match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Exec(v),
            Err(_) => Args::Shell(rest.to_string()),
        },
        false => Args::Shell(rest.to_string()),
    };
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
        inline: Vec::new(),
    })
}

/// Takes heredoc `word`'s `body` into `ins` (at line `start`): a COPY's file, or a RUN's
/// script (or the input of its command).
fn with_heredoc(
    name: &str,
    start: usize,
    ins: &mut Instruction,
    word: String,
    body: &[String],
) -> Result<(), BuildError> {
    if ins.keyword == "COPY" {
        let quoted = match &ins.args {
            Args::Shell(s) => {
                s.contains(&format!("<<\"{word}"))
                    || s.contains(&format!("<<'{word}"))
                    || s.contains(&format!("<<-\"{word}"))
                    || s.contains(&format!("<<-'{word}"))
            }
            Args::Exec(_) => false,
        };
        ins.inline.push(Inline {
            word,
            body: body.iter().map(|l| format!("{l}\n")).collect(),
            quoted,
        });
        return Ok(());
    }
    if ins.keyword != "RUN" {
        return Err(BuildError::parse(
            name,
            start,
            format!(
                "{} <<{word}: heredocs are supported on RUN and COPY only",
                ins.keyword
            ),
        ));
    }
    let cmd = match &ins.args {
        Args::Shell(c) => c.clone(),
        Args::Exec(_) => String::new(),
    };
    let text = body.join("\n");
    ins.args = Args::Shell(match cmd.trim_start().starts_with("<<") {
        // The heredoc is the script itself.
        true => text,
        // A command reading it: the shell takes the heredoc as written.
        false => format!("{cmd}\n{text}\n{word}"),
    });
    Ok(())
}

/// The terminator of the heredoc a shell-form instruction opens (`<<EOF`, `<<-EOF`,
/// `<<"EOF"`), and whether leading tabs are stripped (`<<-`).
fn heredoc(i: &Instruction) -> Option<(String, bool)> {
    let Args::Shell(s) = &i.args else { return None };
    let at = s.find("<<")?;
    let rest = &s[at + 2..];
    let (strip, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let word: String = rest
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some((word, strip))
}

/// The flags strata carries out for each instruction; BuildKit's others are refused
/// naming what they would have done, and anything else is docker's "unknown flag".
fn check_flags(
    name: &str,
    line: usize,
    keyword: &str,
    flags: &[(String, String)],
) -> Result<(), BuildError> {
    let known: &[&str] = match keyword {
        "FROM" => &["platform"],
        "RUN" => &["network", "mount"],
        "COPY" => &["from", "chown", "chmod", "link", "exclude"],
        "ADD" => &["chown", "chmod", "link", "exclude"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    };
    for (k, v) in flags {
        if known.contains(&k.as_str()) {
            continue;
        }
        let why = match (keyword, k.as_str()) {
            ("RUN", "security") => format!("RUN --security={v}: not supported"),
            ("ADD", "checksum" | "keep-git-dir") => {
                format!("ADD --{k}: ADD of URLs and git repositories is not supported")
            }
            ("COPY" | "ADD", "parents") => format!("{keyword} --parents: not supported"),
            _ => format!("unknown flag: --{k}"),
        };
        return Err(BuildError::parse(name, line, why));
    }
    if keyword == "COPY"
        && flags.iter().any(|(k, _)| k == "exclude")
        && flags.iter().any(|(k, _)| k == "from")
    {
        return Err(BuildError::parse(
            name,
            line,
            "COPY --exclude with --from: not supported (--exclude applies to the context)".into(),
        ));
    }
    Ok(())
}

/// Substitutes `$V`, `${V}`, `${V:-word}` and `${V:+word}` from `lookup`; `\$` is a
/// literal `$`. An unknown variable is empty.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            let Some(end) = chars[i + 2..].iter().position(|c| *c == '}') else {
                out.extend(&chars[i..]);
                break;
            };
            let body: String = chars[i + 2..i + 2 + end].iter().collect();
            let value = match body.split_once(":-") {
                Some((n, word)) => lookup(n)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| expand(word, lookup)),
                None => match body.split_once(":+") {
                    Some((n, word)) => match lookup(n).filter(|v| !v.is_empty()) {
                        Some(_) => expand(word, lookup),
                        None => String::new(),
                    },
                    None => lookup(&body).unwrap_or_default(),
                },
            };
            out.push_str(&value);
            i += end + 3;
            continue;
        }
        let len = chars[i + 1..].iter().take_while(|c| name_char(**c)).count();
        if len == 0 {
            out.push('$');
            i += 1;
            continue;
        }
        let n: String = chars[i + 1..i + 1 + len].iter().collect();
        out.push_str(&lookup(&n).unwrap_or_default());
        i += len + 1;
    }
    out
}

/// Splits `K=V K2="v 2" K3=v\ 3` into pairs (quotes and backslashes removed); a lone word
/// is a key with no value.
pub fn key_values(s: &str) -> Vec<(String, Option<String>)> {
    words(s)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_continuations_and_forms() {
        let text = "# syntax=whatever\n# a comment\nFROM box:1 AS base\n\nRUN echo a \\\n  # inside\n  && echo b\nCOPY --chown=1:2 --from=base a b /dst/\nCMD [\"sh\", \"-c\", \"x\"]\nentrypoint [broken\n";
        let v = parse("Containerfile", text).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].args, Args::Shell("box:1 AS base".into()));
        assert_eq!(v[1].line, 5);
        assert_eq!(v[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(v[2].flag("chown"), Some("1:2"));
        assert_eq!(v[2].flag("from"), Some("base"));
        assert_eq!(v[2].args, Args::Shell("a b /dst/".into()));
        assert_eq!(
            v[3].args,
            Args::Exec(vec!["sh".into(), "-c".into(), "x".into()])
        );
        assert_eq!(v[4].keyword, "ENTRYPOINT");
        assert_eq!(v[4].args, Args::Shell("[broken".into()));
        assert_eq!(v[3].text(), "CMD [\"sh\",\"-c\",\"x\"]");
        let e = parse("Containerfile", "FROM a\nFROBNICATE x\n").unwrap_err();
        assert!(e.to_string().contains("Containerfile:2"), "{e}");
        let v = parse("f", "# escape=`\nRUN a `\n b\n").unwrap();
        assert_eq!(v[0].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn substitution_and_words() {
        let vars = |n: &str| match n {
            "A" => Some("x".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand("$A/${A}/${B:-d}/${A:+set}/${B:+no}/\\$A", &vars),
            "x/x/d/set//$A"
        );
        assert_eq!(expand("${E:-empty} $ $1x", &vars), "empty $ ");
        assert_eq!(
            key_values(r#"K=V K2="v 2" K3=v\ 3 lone"#),
            vec![
                ("K".into(), Some("V".into())),
                ("K2".into(), Some("v 2".into())),
                ("K3".into(), Some("v 3".into())),
                ("lone".into(), None),
            ]
        );
        assert_eq!(words("a 'b c' \"d\\\"e\""), ["a", "b c", "d\"e"]);
    }
}
