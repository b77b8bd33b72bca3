//! A detached container's log: a logger process reads the container's stdout and stderr
//! (two pipes) and writes one record per line, `TIME STREAM F|P TEXT` (the CRI log format:
//! RFC 3339 time with nanoseconds, `F` for a whole line, `P` for a part without its
//! newline), so `logs` can give each line's time (`-t`, `--since`, `--until`) and stream.
//! With `--log-opt max-size=` the file is rotated into `log.1` ... `log.N-1`
//! (`max-file=N`); readers take the files oldest first.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::error::ContainerError;

/// The longest record; a longer line is split into `P` records.
const MAX_RECORD: usize = 16 * 1024;

/// `--log-opt`: rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOpts {
    /// Rotate when the file reaches this many bytes (`max-size`).
    pub max_size: Option<u64>,
    /// Files kept, the current one included (`max-file`, default 1).
    pub max_file: u32,
}

impl LogOpts {
    /// Parses `--log-opt KEY=VALUE` entries (docker's json-file options that apply).
    pub fn parse(opts: &[String]) -> Result<LogOpts, ContainerError> {
        let mut o = LogOpts {
            max_size: None,
            max_file: 1,
        };
        for kv in opts {
            let bad = |why: &str| ContainerError::BadSpec(format!("--log-opt {kv}: {why}"));
            match kv.split_once('=') {
                Some(("max-size", v)) => {
                    o.max_size = match crate::runtime::cgroup::parse_size("--log-opt max-size", v)?
                    {
                        0 => return Err(bad("must be more than 0")),
                        n => Some(n),
                    }
                }
                Some(("max-file", v)) => {
                    o.max_file = match v.parse() {
                        Ok(n) if n >= 1 => n,
                        _ => return Err(bad("expected a number of files, at least 1")),
                    }
                }
                Some((k, _)) => {
                    return Err(bad(&format!("unknown option {k} (max-size, max-file)")))
                }
                None => return Err(bad("expected KEY=VALUE")),
            }
        }
        if o.max_file > 1 && o.max_size.is_none() {
            return Err(ContainerError::BadSpec(
                "--log-opt max-file needs max-size".into(),
            ));
        }
        Ok(o)
    }
}

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When the logger read it.
    pub time: jiff::Timestamp,
    /// Its stream.
    pub stream: Stream,
    /// The text, without its newline.
    pub text: Vec<u8>,
    /// True if the line ended here (print a newline after it).
    pub newline: bool,
}

impl Record {
    /// Parses one line of a log file (without its newline); `None` if it isn't a record.
    pub fn parse(line: &[u8]) -> Option<Record> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let newline = match parts.next()? {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        Some(Record {
            time,
            stream,
            text: parts.next().unwrap_or_default().to_vec(),
            newline,
        })
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<usize> {
        let head = format!(
            "{:.9} {} {} ",
            self.time,
            self.stream.as_str(),
            if self.newline { "F" } else { "P" }
        );
        out.write_all(head.as_bytes())?;
        out.write_all(&self.text)?;
        out.write_all(b"\n")?;
        Ok(head.len() + self.text.len() + 1)
    }
}

/// The log files of a container whose current log is `log`, oldest first.
pub fn files(log: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..1000)
        .map(|n| rotated(log, n))
        .take_while(|p| p.exists())
        .collect();
    v.reverse();
    v.push(log.to_path_buf());
    v
}

fn rotated(log: &Path, n: u32) -> PathBuf {
    rotated_with(log, &n.to_string())
}

/// Every record of the log, oldest first (lines that aren't records are skipped).
pub fn read_all(log: &Path) -> io::Result<Vec<Record>> {
    let mut v = Vec::new();
    for f in files(log) {
        match File::open(&f) {
            Ok(file) => v.extend(records(BufReader::new(file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(v)
}

/// The records in a reader of log lines.
pub fn records(r: impl BufRead) -> impl Iterator<Item = Record> {
    r.split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| Record::parse(&l))
}

/// The writing end: appends records, rotating per [`LogOpts`].
struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOpts,
}

impl Writer {
    fn open(path: &Path, opts: LogOpts) -> io::Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            opts,
        })
    }

    fn write(&mut self, r: &Record) -> io::Result<()> {
        self.size += r.write_to(&mut self.file)? as u64;
        if self.opts.max_size.is_some_and(|m| self.size >= m) {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.opts.max_file;
        if keep <= 1 {
            // One file: start it again, as docker's json-file does with max-file=1.
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
        for n in (1..keep - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        *self = Writer::open(&self.path, self.opts)?;
        Ok(())
    }
}

/// Reads one stream until its writers are gone, writing a record per line.
fn pump(from: OwnedFd, stream: Stream, to: &Mutex<Writer>) {
    let mut input = File::from(from);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let emit = |text: &[u8], newline: bool| {
        let r = Record {
            time: jiff::Timestamp::now(),
            stream,
            text: text.to_vec(),
            newline,
        };
        if let Ok(mut w) = to.lock() {
            let _ = w.write(&r);
        }
    };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
            emit(&pending[start..start + i], true);
            start += i + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_RECORD {
            emit(&pending[..MAX_RECORD], false);
            pending.drain(..MAX_RECORD);
        }
    }
    if !pending.is_empty() {
        emit(&pending, false);
    }
}

fn lock_path(log: &Path) -> PathBuf {
    rotated_with(log, "lock")
}

fn rotated_with(log: &Path, ext: &str) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{ext}"));
    PathBuf::from(s)
}

/// The logger: writes what comes through `stdout` and `stderr` into `log` until every
/// writer of both pipes is gone. It holds `log.lock` while it runs (see [`wait_logger`]).
pub fn run_logger(stdout: OwnedFd, stderr: OwnedFd, log: &Path, opts: LogOpts) -> io::Result<()> {
    let lock = File::create(lock_path(log))?;
    crate::sys::fs::flock(std::os::fd::AsFd::as_fd(&lock), libc::LOCK_EX)?;
    let w = Arc::new(Mutex::new(Writer::open(log, opts)?));
    let w2 = Arc::clone(&w);
    let errs = std::thread::spawn(move || pump(stderr, Stream::Stderr, &w2));
    pump(stdout, Stream::Stdout, &w);
    let _ = errs.join();
    Ok(())
}

/// Waits (at most `limit`) until the logger of `log` has written everything it was sent:
/// a container that exited may have lines still on their way through the pipe.
pub fn wait_logger(log: &Path, limit: std::time::Duration) {
    let Ok(lock) = File::open(lock_path(log)) else {
        return;
    };
    let end = std::time::Instant::now() + limit;
    let fd = std::os::fd::AsFd::as_fd(&lock);
    while crate::sys::fs::flock(fd, libc::LOCK_SH | libc::LOCK_NB).is_err()
        && std::time::Instant::now() < end
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> Record {
        Record {
            time: "2026-12-04T07:06:22.123456789Z".parse().unwrap(),
            stream: Stream::Stderr,
            text: text.as_bytes().to_vec(),
            newline: true,
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        rec("a b  c").write_to(&mut buf).unwrap();
        assert_eq!(buf, b"2026-12-04T07:06:22.123456789Z stderr F a b  c\n");
        assert_eq!(Record::parse(&buf[..buf.len() - 1]), Some(rec("a b  c")));
        assert_eq!(
            Record::parse(b"2026-12-04T07:06:22Z stdout P ")
                .unwrap()
                .text,
            b""
        );
        assert_eq!(Record::parse(b"garbage"), None);
        assert_eq!(Record::parse(b"2026-12-04T07:06:22Z stdin F x"), None);
    }

    #[test]
    fn options() {
        let o = |v: &[&str]| LogOpts::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            o(&["max-size=1k", "max-file=3"]).unwrap(),
            LogOpts {
                max_size: Some(1024),
                max_file: 3
            }
        );
        assert!(o(&["max-file=2"]).is_err());
        assert!(o(&["max-size=0"]).is_err());
        assert!(o(&["compress=true"]).is_err());
        assert!(o(&["max-size"]).is_err());
    }

    #[test]
    fn rotation_keeps_max_file_files() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let opts = LogOpts {
            max_size: Some(200),
            max_file: 3,
        };
        let mut w = Writer::open(&log, opts).unwrap();
        for i in 0..40 {
            w.write(&rec(&format!("line {i:02}"))).unwrap();
        }
        let files = files(&log);
        assert_eq!(files.len(), 3, "{files:?}");
        let all = read_all(&log).unwrap();
        // The newest lines survive, in order, and the files hold at most ~max-size each.
        assert_eq!(all.last().unwrap().text, b"line 39");
        let texts: Vec<_> = all.iter().map(|r| r.text.clone()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        assert!(
            all.len() < 20,
            "older files were not dropped: {}",
            all.len()
        );
    }
}
