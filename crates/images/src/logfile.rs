//! Container log files as a kubelet with a CRI runtime keeps them, and `kubectl logs`'s view
//! of them.
//!
//! - The format (containerd's CRI logger): one entry per line,
//!   `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`, where `P` marks a piece of a line
//!   longer than [`MAX_ENTRY_CONTENT`] (or cut off by the end of the stream) and `F` the piece
//!   that ends it.
//! - The writer: [`install_shim`] turns the calling process's stdout and stderr into such a
//!   file, so a built-in image (and any child it starts) logs like a real container.
//! - The readers: [`read`] and [`follow`] produce what `kubectl logs` prints (tail, since,
//!   timestamps, byte limit), joining `P` pieces back into lines.
//! - The layout: `<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`
//!   ([`container_log_path`], [`find_container_logs`]).
//!
//! This module knows files and bytes only; which container is running is the agent's
//! business.

use bytes::Bytes;
use futures::Stream;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest content of one entry; longer lines are split into `P` entries (containerd's
/// default `max_container_log_line_size`).
pub const MAX_ENTRY_CONTENT: usize = 16 * 1024;

/// How often [`follow`] looks for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// How long [`ShimGuard`]'s drop waits for the log to be written out; a child that still
/// holds the pipes open must not keep the container from exiting.
const SHIM_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Which of the container's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }
}

/// One line of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub time: Timestamp,
    pub stream: LogStream,
    /// `P`: the line goes on in the next entry of the same stream.
    pub partial: bool,
    /// Without the newline.
    pub content: Vec<u8>,
}

/// `2016-10-06T00:17:09.669794202Z`: RFC 3339 in UTC with all nine fraction digits, as the
/// kubelet prints timestamps (`--timestamps`).
pub fn format_timestamp(time: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        time.to_zoned(TimeZone::UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        time.subsec_nanosecond()
    )
}

impl Entry {
    /// The entry as a file line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.content.len() + 48);
        line.extend_from_slice(format_timestamp(self.time).as_bytes());
        line.push(b' ');
        line.extend_from_slice(self.stream.as_str().as_bytes());
        line.extend_from_slice(if self.partial { b" P " } else { b" F " });
        line.extend_from_slice(&self.content);
        line.push(b'\n');
        line
    }

    /// Parses one file line (without its newline); `None` if it is not a CRI entry.
    pub fn parse(line: &[u8]) -> Option<Entry> {
        let mut fields = line.splitn(4, |&b| b == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let stream = match fields.next()? {
            b"stdout" => LogStream::Stdout,
            b"stderr" => LogStream::Stderr,
            _ => return None,
        };
        let partial = match fields.next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        Some(Entry {
            time,
            stream,
            partial,
            content: fields.next().unwrap_or_default().to_vec(),
        })
    }
}

/// Cuts one output stream into entries: a line per newline, `P` pieces for long lines.
#[derive(Debug)]
pub struct EntrySplitter {
    stream: LogStream,
    pending: Vec<u8>,
}

impl EntrySplitter {
    pub fn new(stream: LogStream) -> EntrySplitter {
        EntrySplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Appends the encoded entries `bytes` completes to `out`; an unfinished line waits.
    pub fn push(&mut self, bytes: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    self.emit_long_pieces(now, out);
                    self.emit(false, now, out);
                }
                None => {
                    self.pending.extend_from_slice(rest);
                    rest = &[];
                    self.emit_long_pieces(now, out);
                }
            }
        }
    }

    /// At the end of the stream: what is left is a line without its newline, a `P` entry
    /// (as containerd writes it).
    pub fn finish(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.emit(true, now, out);
        }
    }

    fn emit_long_pieces(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        while self.pending.len() > MAX_ENTRY_CONTENT {
            let rest = self.pending.split_off(MAX_ENTRY_CONTENT);
            self.emit(true, now, out);
            self.pending = rest;
        }
    }

    fn emit(&mut self, partial: bool, now: Timestamp, out: &mut Vec<u8>) {
        let entry = Entry {
            time: now,
            stream: self.stream,
            partial,
            content: std::mem::take(&mut self.pending),
        };
        out.extend_from_slice(&entry.encode());
    }
}

/// `kubectl logs` options the kubelet applies to a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N lines (applied before `since_time`, as the kubelet does).
    pub tail_lines: Option<usize>,
    /// Prefix each line with its RFC3339Nano time.
    pub timestamps: bool,
    /// Only lines logged at or after this time.
    pub since_time: Option<Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
}

/// A whole line of output, `P` pieces joined; `ended` is false for a last piece the stream
/// never finished.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogLine {
    time: Timestamp,
    content: Vec<u8>,
    ended: bool,
}

impl LogLine {
    fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(format_timestamp(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        if self.ended {
            out.push(b'\n');
        }
    }
}

/// Joins entries into lines; pieces of a long line wait per stream, so an interleaved
/// line of the other stream does not break them.
#[derive(Debug, Default)]
struct LineJoiner {
    pending: [Option<LogLine>; 2],
}

impl LineJoiner {
    /// The line `raw` (a file line without newline) completes, if any. Lines that are not
    /// CRI entries are skipped, as the kubelet skips them.
    fn push(&mut self, raw: &[u8]) -> Option<LogLine> {
        let entry = Entry::parse(raw)?;
        let slot = &mut self.pending[entry.stream.index()];
        let mut line = slot.take().unwrap_or(LogLine {
            time: entry.time,
            content: Vec::new(),
            ended: false,
        });
        line.content.extend_from_slice(&entry.content);
        if entry.partial {
            *slot = Some(line);
            None
        } else {
            line.ended = true;
            Some(line)
        }
    }

    /// Unfinished lines, oldest first.
    fn drain(&mut self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self.pending.iter_mut().filter_map(Option::take).collect();
        lines.sort_by_key(|l| l.time);
        lines
    }
}

/// Splits `data` into complete file lines; returns them and how many bytes they cover.
fn complete_lines(data: &[u8]) -> (impl Iterator<Item = &[u8]>, usize) {
    let consumed = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = data[..consumed]
        .split(|&b| b == b'\n')
        .take(data[..consumed].iter().filter(|&&b| b == b'\n').count());
    (lines, consumed)
}

/// Output limited to `limit_bytes` overall.
#[derive(Debug)]
struct Limiter {
    remaining: Option<usize>,
}

impl Limiter {
    fn clip(&mut self, mut out: Vec<u8>) -> Vec<u8> {
        if let Some(remaining) = &mut self.remaining {
            out.truncate(*remaining);
            *remaining -= out.len();
        }
        out
    }

    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Renders `lines` with the tail and since options; what the first read of a file prints.
fn render_initial(lines: Vec<LogLine>, opts: &ReadOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let skip = opts.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    for line in lines.into_iter().skip(skip) {
        if opts.since_time.is_none_or(|since| line.time >= since) {
            line.render(opts.timestamps, &mut out);
        }
    }
    out
}

/// Decodes the complete lines of `data`, keeping only as many as a tail needs.
fn decode(data: &[u8], joiner: &mut LineJoiner, tail: Option<usize>) -> (Vec<LogLine>, usize) {
    let (raw_lines, consumed) = complete_lines(data);
    let mut lines = VecDeque::new();
    for raw in raw_lines {
        if let Some(line) = joiner.push(raw) {
            lines.push_back(line);
            if tail.is_some_and(|n| lines.len() > n) {
                lines.pop_front();
            }
        }
    }
    (lines.into(), consumed)
}

/// What `kubectl logs` prints for the log file at `path` (without `--follow`).
pub fn read(path: &Path, opts: &ReadOptions) -> io::Result<Vec<u8>> {
    let data = std::fs::read(path)?;
    let mut joiner = LineJoiner::default();
    let (mut lines, _) = decode(&data, &mut joiner, None);
    // A line the container never finished is still output, without a newline.
    lines.extend(joiner.drain());
    let out = render_initial(lines, opts);
    Ok(Limiter {
        remaining: opts.limit_bytes,
    }
    .clip(out))
}

/// `kubectl logs -f`: first what [`read`] prints (but holding back an unfinished last line),
/// then each line as it is appended. The stream ends when the byte limit is reached or the
/// file is removed (the pod's logs were deleted); a truncated file is read again from its
/// start.
pub fn follow(path: PathBuf, opts: ReadOptions) -> impl Stream<Item = io::Result<Bytes>> {
    struct Follower {
        path: PathBuf,
        opts: ReadOptions,
        offset: u64,
        joiner: LineJoiner,
        limiter: Limiter,
        started: bool,
        done: bool,
    }
    let state = Follower {
        limiter: Limiter {
            remaining: opts.limit_bytes,
        },
        path,
        opts,
        offset: 0,
        joiner: LineJoiner::default(),
        started: false,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done || s.limiter.exhausted() {
                return None;
            }
            if s.started {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            let len = match tokio::fs::metadata(&s.path).await {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound && s.started => return None,
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            };
            if len < s.offset {
                s.offset = 0;
                s.joiner = LineJoiner::default();
            }
            if len == s.offset && s.started {
                continue;
            }
            let data = match read_from(&s.path, s.offset).await {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            };
            let tail = if s.started { None } else { s.opts.tail_lines };
            let (lines, consumed) = decode(&data, &mut s.joiner, tail);
            s.offset += consumed as u64;
            let out = if s.started {
                let mut out = Vec::new();
                for line in lines {
                    if s.opts.since_time.is_none_or(|since| line.time >= since) {
                        line.render(s.opts.timestamps, &mut out);
                    }
                }
                out
            } else {
                s.started = true;
                render_initial(lines, &s.opts)
            };
            let out = s.limiter.clip(out);
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), s));
            }
        }
    })
}

/// The bytes of `path` from `offset` on.
async fn read_from(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(io::SeekFrom::Start(offset)).await?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await?;
    Ok(data)
}

/// `<root>/<namespace>_<pod>_<uid>`: a pod's log directory.
pub fn pod_log_dir(root: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{pod}_{uid}"))
}

/// `<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`.
pub fn container_log_path(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    restart_count: u32,
) -> PathBuf {
    pod_log_dir(root, namespace, pod, uid)
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// The log files of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLogFiles {
    pub uid: String,
    /// The file of the newest instance (the highest restart count).
    pub current: PathBuf,
    pub restart_count: u32,
    /// The file of the instance before it (`kubectl logs --previous`).
    pub previous: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("pod {pod:?} does not exist")]
    PodNotFound { pod: String },
    #[error("container {container:?} not found in pod {pod:?}")]
    ContainerNotFound { pod: String, container: String },
    #[error("reading the log directory {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Finds a container's log files by namespace, pod name and container name. When pods of
/// the same name left several directories (a pod recreated before the old one's logs were
/// removed), the one whose newest file changed last wins.
pub fn find_container_logs(
    root: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerLogFiles, FindError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FindError::Io { path, source }
    };
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FindError::PodNotFound { pod: pod.into() });
        }
        Err(e) => return Err(io_error(root)(e)),
    };
    let prefix = format!("{namespace}_{pod}_");
    let mut pod_found = false;
    let mut best: Option<(std::time::SystemTime, ContainerLogFiles)> = None;
    for entry in entries {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name();
        let Some(uid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        // Names and namespaces cannot hold '_', so a longer pod name cannot match here.
        if uid.is_empty() || uid.contains('_') {
            continue;
        }
        pod_found = true;
        let dir = entry.path().join(container);
        let mut counts = match restart_counts(&dir) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&dir)(e)),
        };
        counts.sort_unstable();
        let Some(&current) = counts.last() else {
            continue;
        };
        let current_path = dir.join(format!("{current}.log"));
        let modified = std::fs::metadata(&current_path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let files = ContainerLogFiles {
            uid: uid.to_string(),
            current: current_path,
            restart_count: current,
            previous: counts
                .iter()
                .rev()
                .nth(1)
                .map(|p| dir.join(format!("{p}.log"))),
        };
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, files));
        }
    }
    match best {
        Some((_, files)) => Ok(files),
        None if pod_found => Err(FindError::ContainerNotFound {
            pod: pod.into(),
            container: container.into(),
        }),
        None => Err(FindError::PodNotFound { pod: pod.into() }),
    }
}

/// The restart counts that have a `<n>.log` file in `dir`.
fn restart_counts(dir: &Path) -> io::Result<Vec<u32>> {
    let mut counts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            counts.push(n);
        }
    }
    Ok(counts)
}

/// Keeps the log shim alive; dropping it flushes what the process printed into the log and
/// gives the process its original stdout and stderr back. Hold it in `main` until the
/// container's exit code is known.
pub struct ShimGuard {
    /// The descriptors fd 1 and 2 had before the shim, to put back.
    saved: Vec<(RawFd, OwnedFd)>,
    reader: Option<JoinHandle<()>>,
    /// The reader sends once when it has written everything out.
    drained: mpsc::Receiver<()>,
}

impl Drop for ShimGuard {
    fn drop(&mut self) {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        // Putting the old descriptors back closes our pipes' write ends; the readers then
        // see end of file (unless a child still holds them, hence the deadline).
        for (fd, saved) in self.saved.drain(..) {
            // SAFETY: dup2 onto a descriptor number this process owns (1 or 2).
            unsafe { libc::dup2(saved.as_raw_fd(), fd) };
        }
        if let Some(reader) = self.reader.take()
            && self.drained.recv_timeout(SHIM_DRAIN_TIMEOUT).is_ok()
        {
            let _ = reader.join();
        }
    }
}

/// Sends this process's stdout and stderr (fds 1 and 2, so children inherit it too) into the
/// CRI log file `log_path`: each line becomes an entry with its time and stream. The file
/// (and its directory) is created if missing, mode 0640, and appended to.
pub fn install_shim(log_path: &Path) -> io::Result<ShimGuard> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log_path)?;
    let file = Arc::new(Mutex::new(file));
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    let (drained_tx, drained) = mpsc::channel();
    let mut guard = ShimGuard {
        saved: Vec::new(),
        reader: None,
        drained,
    };
    let mut pipes = Vec::new();
    for (fd, stream) in [(1, LogStream::Stdout), (2, LogStream::Stderr)] {
        // On an error the guard's drop restores the descriptors already redirected.
        let (read_end, write_end) = pipe()?;
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
        let saved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `saved` is a fresh descriptor nobody else owns.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // SAFETY: dup2 onto fd 1 or 2; the write end stays owned by `write_end`.
        if unsafe { libc::dup2(write_end.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
        guard.saved.push((fd, saved));
        pipes.push((File::from(read_end), EntrySplitter::new(stream)));
    }
    // One thread for both streams: when both have output waiting, stdout is read first,
    // which keeps the file in the order a program that prints to both usually means.
    let reader = std::thread::Builder::new()
        .name("container-log".into())
        .spawn(move || {
            copy_into_log(pipes, &file);
            let _ = drained_tx.send(());
        })?;
    guard.reader = Some(reader);
    Ok(guard)
}

/// A pipe whose both ends close on exec (fd 1 and 2 get a non-CLOEXEC copy via dup2).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The reader thread: both pipes → entries → file, until both reach end of file.
fn copy_into_log(mut pipes: Vec<(File, EntrySplitter)>, file: &Mutex<File>) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !pipes.is_empty() {
        let mut polled: Vec<libc::pollfd> = pipes
            .iter()
            .map(|(pipe, _)| libc::pollfd {
                fd: pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll reads and writes only the array we pass with its length.
        let rc = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut closed = Vec::new();
        for (i, p) in polled.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let (pipe, splitter) = &mut pipes[i];
            match pipe.read(&mut chunk) {
                Ok(0) => closed.push(i),
                Ok(n) => splitter.push(&chunk[..n], Timestamp::now(), &mut out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            let (_, mut splitter) = pipes.remove(i);
            splitter.finish(Timestamp::now(), &mut out);
        }
        write_entries(file, &mut out);
    }
    for (_, mut splitter) in pipes {
        splitter.finish(Timestamp::now(), &mut out);
    }
    write_entries(file, &mut out);
}

fn write_entries(file: &Mutex<File>, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    if let Ok(mut f) = file.lock() {
        // Nowhere left to report a failing log write: the container's output is the log.
        let _ = f.write_all(out);
    }
    out.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64, nanos: i32) -> Timestamp {
        Timestamp::new(second, nanos).expect("valid time")
    }

    fn entries_of(bytes: &[u8]) -> Vec<Entry> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Entry::parse(l).expect("entry"))
            .collect()
    }

    #[test]
    fn entry_round_trip() {
        let e = Entry {
            time: at(1_475_712_629, 669_794_202),
            stream: LogStream::Stderr,
            partial: true,
            content: b"a b  c".to_vec(),
        };
        assert_eq!(
            e.encode(),
            b"2016-10-06T00:10:29.669794202Z stderr P a b  c\n"
        );
        assert_eq!(Entry::parse(&e.encode()[..e.encode().len() - 1]), Some(e));
        // Empty lines and containerd's trimmed fractions parse too.
        let empty = Entry::parse(b"2016-10-06T00:10:29.5Z stdout F ").expect("entry");
        assert_eq!(empty.content, b"");
        assert_eq!(empty.time, at(1_475_712_629, 500_000_000));
        assert_eq!(Entry::parse(b"garbage"), None);
        assert_eq!(Entry::parse(b"2016-10-06T00:10:29Z stdin F x"), None);
    }

    #[test]
    fn splitter_cuts_long_lines_into_partials() {
        let mut s = EntrySplitter::new(LogStream::Stdout);
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_ENTRY_CONTENT * 2 + 5];
        s.push(b"hello\nwor", at(10, 0), &mut out);
        s.push(b"ld\n", at(11, 0), &mut out);
        s.push(&long, at(12, 0), &mut out);
        s.push(b"\ntail without newline", at(13, 0), &mut out);
        s.finish(at(14, 0), &mut out);
        let got: Vec<(bool, usize)> = entries_of(&out)
            .iter()
            .map(|e| (e.partial, e.content.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (false, 5),
                (false, 5),
                (true, MAX_ENTRY_CONTENT),
                (true, MAX_ENTRY_CONTENT),
                (false, 5),
                (true, 20),
            ]
        );
    }

    fn write_log(dir: &Path, entries: &[(i64, LogStream, bool, &str)]) -> PathBuf {
        let path = dir.join("0.log");
        let mut data = Vec::new();
        for (second, stream, partial, content) in entries {
            data.extend(
                Entry {
                    time: at(*second, 0),
                    stream: *stream,
                    partial: *partial,
                    content: content.as_bytes().to_vec(),
                }
                .encode(),
            );
        }
        std::fs::write(&path, data).expect("write log");
        path
    }

    fn sample(dir: &Path) -> PathBuf {
        use LogStream::{Stderr, Stdout};
        write_log(
            dir,
            &[
                (100, Stdout, false, "one"),
                (101, Stdout, true, "tw"),
                (102, Stderr, false, "err"),
                (103, Stdout, false, "o"),
                (104, Stdout, false, "three"),
            ],
        )
    }

    fn text(path: &Path, opts: ReadOptions) -> String {
        String::from_utf8(read(path, &opts).expect("read")).expect("utf-8")
    }

    #[test]
    fn read_joins_partials_and_applies_options() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = sample(dir.path());
        assert_eq!(
            text(&path, ReadOptions::default()),
            "one\nerr\ntwo\nthree\n"
        );
        let tail = ReadOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(text(&path, tail), "two\nthree\n");
        let stamped = ReadOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            text(&path, stamped),
            "1970-01-01T00:01:44.000000000Z three\n"
        );
        // A joined line carries the time of its first piece.
        let since = ReadOptions {
            since_time: Some(at(101, 0)),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            text(&path, since),
            "1970-01-01T00:01:42.000000000Z err\n1970-01-01T00:01:41.000000000Z two\n1970-01-01T00:01:44.000000000Z three\n"
        );
        let limited = ReadOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(text(&path, limited), "one\ner");
        let zero_tail = ReadOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(text(&path, zero_tail), "");
    }

    #[test]
    fn unfinished_last_line_is_printed_without_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(
            dir.path(),
            &[
                (1, LogStream::Stdout, false, "done"),
                (2, LogStream::Stdout, true, "prompt> "),
            ],
        );
        assert_eq!(text(&path, ReadOptions::default()), "done\nprompt> ");
    }

    #[test]
    fn layout_and_finder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let p = container_log_path(root, "default", "web", "uid-1", "nginx", 0);
        assert_eq!(p, root.join("default_web_uid-1/nginx/0.log"));
        for n in [0, 1, 3] {
            let p = container_log_path(root, "default", "web", "uid-1", "nginx", n);
            std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
            std::fs::write(&p, b"").expect("write");
        }
        // A longer pod name with the same prefix must not match.
        let other = container_log_path(root, "default", "web_x", "uid-2", "nginx", 9);
        std::fs::create_dir_all(other.parent().expect("dir")).expect("mkdir");
        std::fs::write(&other, b"").expect("write");
        let found = find_container_logs(root, "default", "web", "nginx").expect("found");
        assert_eq!(found.restart_count, 3);
        assert_eq!(found.uid, "uid-1");
        assert_eq!(found.current, root.join("default_web_uid-1/nginx/3.log"));
        assert_eq!(
            found.previous,
            Some(root.join("default_web_uid-1/nginx/1.log"))
        );
        assert!(matches!(
            find_container_logs(root, "default", "web", "sidecar"),
            Err(FindError::ContainerNotFound { .. })
        ));
        assert!(matches!(
            find_container_logs(root, "default", "db", "nginx"),
            Err(FindError::PodNotFound { .. })
        ));
        assert!(matches!(
            find_container_logs(&root.join("missing"), "default", "web", "nginx"),
            Err(FindError::PodNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn follow_yields_tail_then_new_lines() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = sample(dir.path());
        let opts = ReadOptions {
            tail_lines: Some(1),
            ..Default::default()
        };
        let mut stream = Box::pin(follow(path.clone(), opts));
        let first = stream.next().await.expect("item").expect("read");
        assert_eq!(&first[..], b"three\n");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        let mut out = Vec::new();
        let mut splitter = EntrySplitter::new(LogStream::Stdout);
        splitter.push(b"four\nfi", at(200, 0), &mut out);
        file.write_all(&out).expect("append");
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a new line within 5 s")
            .expect("item")
            .expect("read");
        assert_eq!(&next[..], b"four\n");
        out.clear();
        splitter.push(b"ve\n", at(201, 0), &mut out);
        file.write_all(&out).expect("append");
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a new line within 5 s")
            .expect("item")
            .expect("read");
        assert_eq!(&next[..], b"five\n");
        std::fs::remove_file(&path).expect("remove");
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the stream ends once the file is gone");
        assert!(end.is_none());
    }
}
