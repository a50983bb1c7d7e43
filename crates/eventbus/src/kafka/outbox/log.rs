//! The outbox's log on disk: one thread appends with group commit, the relay reads, and what the
//! broker acknowledged is deleted a segment at a time.
//!
//! The directory holds:
//! - `lock`, held by the bus that owns the outbox, so that two never write it at once;
//! - segments named by the offset of their first entry (20 digits) and `.log`. Each starts with
//!   `EBOX` and the format version (u32, little-endian), then one frame per entry: the entry's
//!   length (u32), its CRC-32 (u32), then its bytes;
//! - `relay.offset`: the first offset the broker has not acknowledged, in decimal, replaced
//!   atomically. Losing it only makes the relay send again what the broker already has.
//!
//! A crash can leave a torn frame at the end of the last segment. It was never synced, so no
//! publisher was told it was stored, and opening cuts it off. A bad frame in an earlier segment
//! is damage: opening fails rather than skip entries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::error::OutboxError;

const MAGIC: &[u8; 4] = b"EBOX";
/// The format this build writes and reads.
const VERSION: u32 = 1;
const SEGMENT_HEADER: u64 = 8;
const FRAME_HEADER: usize = 8;
/// A segment is closed and the next one started once it is this large.
const SEGMENT_BYTES: u64 = if cfg!(test) { 4096 } else { 64 << 20 };
/// The largest entry: a longer length in a frame is damage.
const MAX_ENTRY: u32 = 256 << 20;
/// Appends waiting for the writer, at most.
const QUEUE: usize = 1024;
/// Appends written together and synced once, at most.
const GROUP: usize = 256;
/// How long opening waits for an earlier owner of the directory to let go of it.
const LOCK_WAIT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });
const CURSOR: &str = "relay.offset";

/// Whether a group of appends is on disk: `None` until its sync ends.
pub(super) type Stored = watch::Receiver<Option<bool>>;

/// Entries framed for the log by the caller, so that the writer only writes.
#[derive(Default)]
pub(super) struct Frames {
    bytes: Vec<u8>,
    count: u64,
}

impl Frames {
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self { bytes: Vec::with_capacity(bytes), count: 0 }
    }

    /// Adds one entry, which `write` appends to the buffer it is given.
    pub(super) fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), OutboxError> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; FRAME_HEADER]);
        write(&mut self.bytes);
        let entry = &self.bytes[start + FRAME_HEADER..];
        let Some(len) = u32::try_from(entry.len()).ok().filter(|len| *len <= MAX_ENTRY) else {
            let size = entry.len();
            self.bytes.truncate(start);
            return Err(OutboxError::TooLarge { size, limit: MAX_ENTRY });
        };
        let crc = crc32fast::hash(entry);
        self.bytes[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.count += 1;
        Ok(())
    }

    pub(super) fn len(&self) -> u64 {
        self.count
    }
}

/// What the writer calls for each append once it is written, before the sync: its first
/// offset, what came with it, and whether its group gets synced.
pub(super) type OnWritten<T> = Box<dyn FnMut(u64, T, &Stored) + Send>;

/// The log: appends go to its writer thread, which owns the files until the log is dropped.
pub(super) struct Log<T> {
    dir: PathBuf,
    appends: mpsc::Sender<Append<T>>,
    /// Where the synced entries end: every entry before it is on disk.
    synced: Arc<AtomicU64>,
    /// Woken after each sync.
    synced_signal: Arc<Notify>,
    /// Held while the log is open.
    _lock: File,
}

struct Append<T> {
    frames: Frames,
    with: T,
    reply: oneshot::Sender<Result<u64, OutboxError>>,
}

impl<T: Send + 'static> Log<T> {
    /// Opens the log in `dir` (created if missing) for this process alone, cuts off a torn end,
    /// deletes what the broker acknowledged, and starts the writer. Returns the log and the
    /// first offset the broker has not acknowledged. Blocking.
    pub(super) fn open(dir: &Path, on_written: OnWritten<T>) -> Result<(Self, u64), OutboxError> {
        crate::private::dir(dir).map_err(OutboxError::io(dir))?;
        let lock = lock(dir)?;
        let cursor = read_cursor(dir)?;
        let mut segments = segments(dir)?;
        // What the broker acknowledged in full need not be read again.
        while segments.len() > 1 && segments[1].0 <= cursor.unwrap_or(0) {
            let (_, path) = segments.remove(0);
            fs::remove_file(&path).map_err(OutboxError::io(&path))?;
        }
        let mut recovered = None;
        let last = segments.len().saturating_sub(1);
        for (i, (base, path)) in segments.iter().enumerate() {
            if let Some(end) = recovered
                && *base != end
            {
                return Err(OutboxError::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: "a gap before this segment",
                });
            }
            recovered = Some(base + recover(path, i == last)?);
        }
        let cursor = cursor.unwrap_or(0).max(segments.first().map_or(0, |(base, _)| *base));
        if let Some(end) = recovered
            && cursor > end
        {
            // Everything kept was acknowledged. New entries continue from the cursor, so that it
            // never covers one not yet sent.
            tracing::warn!(cursor, end, "Outbox cursor past its last entry; continuing from the cursor");
            for (_, path) in segments.drain(..) {
                fs::remove_file(&path).map_err(OutboxError::io(&path))?;
            }
        }
        let end = if segments.is_empty() { cursor } else { recovered.unwrap_or(cursor) };
        let active = match segments.last() {
            Some((_, path)) if size(path)? < SEGMENT_BYTES => Segment::reopen(path)?,
            _ => Segment::create(dir, end)?,
        };
        let (appends, queue) = mpsc::channel(QUEUE);
        let synced = Arc::new(AtomicU64::new(end));
        let synced_signal = Arc::new(Notify::new());
        let writer = Writer {
            dir: dir.to_path_buf(),
            active,
            next: end,
            synced: Arc::clone(&synced),
            synced_signal: Arc::clone(&synced_signal),
            on_written,
            stopped: None,
        };
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(OutboxError::io(dir))?;
        Ok((Self { dir: dir.to_path_buf(), appends, synced, synced_signal, _lock: lock }, cursor))
    }

    /// Appends entries, in order; answers with their offsets once they are synced.
    pub(super) async fn append(&self, frames: Frames, with: T) -> Result<Range<u64>, OutboxError> {
        let count = frames.len();
        let (reply, answer) = oneshot::channel();
        self.appends.send(Append { frames, with, reply }).await.map_err(|_| OutboxError::WriterGone)?;
        let first = answer.await.map_err(|_| OutboxError::WriterGone)??;
        Ok(first..first + count)
    }

    /// Where the synced entries end.
    pub(super) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Woken after each sync.
    pub(super) fn synced_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.synced_signal)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Records that the broker acknowledged every entry before `cursor`, then deletes the segments
/// it acknowledged in full. Blocking.
pub(super) fn record(dir: &Path, cursor: u64) -> Result<(), OutboxError> {
    let temporary = dir.join(format!("{CURSOR}.tmp"));
    let mut file = File::create(&temporary).map_err(OutboxError::io(&temporary))?;
    writeln!(file, "{cursor}").and_then(|()| file.sync_data()).map_err(OutboxError::io(&temporary))?;
    fs::rename(&temporary, dir.join(CURSOR)).map_err(OutboxError::io(dir.join(CURSOR)))?;
    let segments = segments(dir)?;
    for pair in segments.windows(2) {
        if pair[1].0 <= cursor {
            fs::remove_file(&pair[0].1).map_err(OutboxError::io(&pair[0].1))?;
        }
    }
    Ok(())
}

/// The writer thread: takes the appends waiting (up to [`GROUP`]), writes them, hands each to
/// `on_written`, then syncs once and answers them all. After a failed write or sync it takes no
/// more appends: what the disk holds is then unknown until the log is opened again.
struct Writer<T> {
    dir: PathBuf,
    active: Segment,
    /// The offset the next entry gets.
    next: u64,
    synced: Arc<AtomicU64>,
    synced_signal: Arc<Notify>,
    on_written: OnWritten<T>,
    stopped: Option<String>,
}

impl<T> Writer<T> {
    fn run(mut self, mut queue: mpsc::Receiver<Append<T>>) {
        let mut group = Vec::with_capacity(GROUP);
        while let Some(append) = queue.blocking_recv() {
            group.push(append);
            while group.len() < GROUP
                && let Ok(append) = queue.try_recv()
            {
                group.push(append);
            }
            self.write(&mut group);
        }
    }

    fn write(&mut self, group: &mut Vec<Append<T>>) {
        if let Some(reason) = &self.stopped {
            for append in group.drain(..) {
                let _ = append.reply.send(Err(OutboxError::Stopped { reason: reason.clone() }));
            }
            return;
        }
        let (stored, stored_rx) = watch::channel(None);
        let mut written = Vec::with_capacity(group.len());
        let mut failure = None;
        for Append { frames, with, reply } in group.drain(..) {
            if failure.is_some() {
                written.push((reply, None));
                continue;
            }
            match self.active.write(&self.dir, self.next, &frames.bytes) {
                Ok(()) => {
                    (self.on_written)(self.next, with, &stored_rx);
                    written.push((reply, Some(self.next)));
                    self.next += frames.count;
                }
                Err(error) => {
                    failure = Some(error);
                    written.push((reply, None));
                }
            }
        }
        let synced = match failure {
            Some(error) => Err(error),
            None => self.active.sync(),
        };
        match synced {
            Ok(()) => {
                self.synced.store(self.next, Ordering::Release);
                let _ = stored.send(Some(true));
                self.synced_signal.notify_one();
                for (reply, first) in written {
                    let _ = reply.send(first.ok_or(OutboxError::WriterGone));
                }
            }
            Err(error) => {
                tracing::error!(%error, "Outbox write failed; the outbox takes no more appends until restarted");
                let reason = error.to_string();
                self.stopped = Some(reason.clone());
                let _ = stored.send(Some(false));
                for (reply, _) in written {
                    let _ = reply.send(Err(OutboxError::Stopped { reason: reason.clone() }));
                }
            }
        }
    }
}

/// The segment the writer appends to.
struct Segment {
    path: PathBuf,
    file: File,
    size: u64,
    /// Whether it holds writes not yet synced.
    dirty: bool,
}

impl Segment {
    fn create(dir: &Path, base: u64) -> Result<Self, OutboxError> {
        let path = dir.join(format!("{base:020}.log"));
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(OutboxError::io(&path))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&VERSION.to_le_bytes());
        file.write_all(&header).and_then(|()| file.sync_all()).map_err(OutboxError::io(&path))?;
        // The new name must survive a crash too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(OutboxError::io(dir))?;
        Ok(Self { path, file, size: SEGMENT_HEADER, dirty: false })
    }

    fn reopen(path: &Path) -> Result<Self, OutboxError> {
        let file = OpenOptions::new().append(true).open(path).map_err(OutboxError::io(path))?;
        let size = file.metadata().map_err(OutboxError::io(path))?.len();
        Ok(Self { path: path.to_path_buf(), file, size, dirty: false })
    }

    /// Writes `bytes`, the frames of the entries from `next` on, starting a new segment first if
    /// this one is full.
    fn write(&mut self, dir: &Path, next: u64, bytes: &[u8]) -> Result<(), OutboxError> {
        if self.size >= SEGMENT_BYTES {
            self.sync()?;
            *self = Self::create(dir, next)?;
        }
        self.dirty = true;
        self.file.write_all(bytes).map_err(OutboxError::io(&self.path))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), OutboxError> {
        if self.dirty {
            self.file.sync_data().map_err(OutboxError::io(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Reads entries in order for the relay; keeps its place between reads.
pub(super) struct Reader {
    dir: PathBuf,
    at: Option<Place>,
}

/// An open segment and the offset of the next frame in it.
struct Place {
    path: PathBuf,
    file: BufReader<File>,
    position: u64,
    next: u64,
}

impl Reader {
    pub(super) fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), at: None }
    }

    /// Up to `max` entries from offset `from`, none at or past `end` (the synced end). Blocking.
    pub(super) fn read(&mut self, from: u64, end: u64, max: usize) -> Result<Vec<(u64, Bytes)>, OutboxError> {
        let mut entries = Vec::new();
        let mut offset = from;
        while entries.len() < max && offset < end {
            let place = match &mut self.at {
                Some(place) if place.next == offset => place,
                _ => self.at.insert(self.seek(offset)?),
            };
            match place.frame()? {
                Some(entry) => {
                    entries.push((offset, entry));
                    offset += 1;
                }
                // The end of a segment: the next one starts at this offset.
                None => self.at = Some(self.open_at(offset)?),
            }
        }
        Ok(entries)
    }

    /// Opens the segment that holds `offset` and moves to it.
    fn seek(&self, offset: u64) -> Result<Place, OutboxError> {
        let segments = segments(&self.dir)?;
        let Some((base, path)) = segments.iter().rev().find(|(base, _)| *base <= offset) else {
            return Err(OutboxError::Corrupt {
                path: self.dir.clone(),
                position: 0,
                reason: "no segment holds the entry",
            });
        };
        let mut place = Place::open(path, *base)?;
        while place.next < offset {
            if !place.skip()? {
                return Err(OutboxError::Corrupt {
                    path: path.clone(),
                    position: place.position,
                    reason: "the segment ends before the entry",
                });
            }
        }
        Ok(place)
    }

    /// Opens the segment that starts at `offset`.
    fn open_at(&self, offset: u64) -> Result<Place, OutboxError> {
        let path = self.dir.join(format!("{offset:020}.log"));
        if !path.exists() {
            let reason = "a segment ends before the synced end and no segment follows it";
            return Err(OutboxError::Corrupt { path, position: 0, reason });
        }
        Place::open(&path, offset)
    }
}

impl Place {
    fn open(path: &Path, base: u64) -> Result<Self, OutboxError> {
        let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(OutboxError::io(path))?);
        check_header(path, &mut file)?;
        Ok(Self { path: path.to_path_buf(), file, position: SEGMENT_HEADER, next: base })
    }

    /// The next frame's length and CRC; `None` at the end of the segment.
    fn header(&mut self) -> Result<Option<(u32, u32)>, OutboxError> {
        let mut header = [0; FRAME_HEADER];
        match read_full(&mut self.file, &mut header).map_err(OutboxError::io(&self.path))? {
            0 => Ok(None),
            FRAME_HEADER => {
                let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
                let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
                if len > MAX_ENTRY {
                    return Err(self.damaged("a frame longer than any entry"));
                }
                Ok(Some((len, crc)))
            }
            _ => Err(self.damaged("a frame cut short")),
        }
    }

    /// The next entry; `None` at the end of the segment.
    fn frame(&mut self) -> Result<Option<Bytes>, OutboxError> {
        let Some((len, crc)) = self.header()? else { return Ok(None) };
        let mut entry = vec![0; len as usize];
        self.file.read_exact(&mut entry).map_err(|_| self.damaged("a frame cut short"))?;
        if crc32fast::hash(&entry) != crc {
            return Err(self.damaged("a frame whose checksum does not match"));
        }
        self.position += FRAME_HEADER as u64 + u64::from(len);
        self.next += 1;
        Ok(Some(Bytes::from(entry)))
    }

    /// Passes over the next frame; `false` at the end of the segment.
    fn skip(&mut self) -> Result<bool, OutboxError> {
        let Some((len, _)) = self.header()? else { return Ok(false) };
        self.file.seek_relative(i64::from(len)).map_err(OutboxError::io(&self.path))?;
        self.position += FRAME_HEADER as u64 + u64::from(len);
        self.next += 1;
        Ok(true)
    }

    fn damaged(&self, reason: &'static str) -> OutboxError {
        OutboxError::Corrupt { path: self.path.clone(), position: self.position, reason }
    }
}

/// Reads the frames of a segment and returns how many are whole. A torn or damaged end of the
/// last segment is cut off; in an earlier segment it is an error.
fn recover(path: &Path, last: bool) -> Result<u64, OutboxError> {
    let mut place = match Place::open(path, 0) {
        Ok(place) => place,
        // Created, but its header never synced: as if it was never created.
        Err(OutboxError::Corrupt { position: 0, .. }) if last && size(path)? < SEGMENT_HEADER => {
            rewrite_header(path)?;
            return Ok(0);
        }
        Err(error) => return Err(error),
    };
    loop {
        match place.frame() {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(place.next),
            Err(OutboxError::Corrupt { position, reason, .. }) if last => {
                let dropped = size(path)? - position;
                tracing::warn!(
                    path = %path.display(), position, dropped, reason,
                    "Outbox ends with a frame that was never synced; cut off"
                );
                let file = OpenOptions::new().write(true).open(path).map_err(OutboxError::io(path))?;
                file.set_len(position).and_then(|()| file.sync_all()).map_err(OutboxError::io(path))?;
                return Ok(place.next);
            }
            Err(error) => return Err(error),
        }
    }
}

fn rewrite_header(path: &Path) -> Result<(), OutboxError> {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&VERSION.to_le_bytes());
    fs::write(path, header).and_then(|()| File::open(path)?.sync_all()).map_err(OutboxError::io(path))
}

fn check_header(path: &Path, file: &mut impl Read) -> Result<(), OutboxError> {
    let mut header = [0; SEGMENT_HEADER as usize];
    if read_full(file, &mut header).map_err(OutboxError::io(path))? != header.len() {
        return Err(OutboxError::Corrupt { path: path.to_path_buf(), position: 0, reason: "no segment header" });
    }
    if &header[..4] != MAGIC {
        return Err(OutboxError::Corrupt { path: path.to_path_buf(), position: 0, reason: "not an outbox segment" });
    }
    let found = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if found != VERSION {
        return Err(OutboxError::UnknownVersion { path: path.to_path_buf(), found, expected: VERSION });
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns how much it read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read(&mut buf[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(read)
}

fn size(path: &Path) -> Result<u64, OutboxError> {
    Ok(fs::metadata(path).map_err(OutboxError::io(path))?.len())
}

/// The segments in `dir`, by the offset of their first entry.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, OutboxError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(OutboxError::io(dir))? {
        let path = entry.map_err(OutboxError::io(dir))?.path();
        let base = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .filter(|digits| digits.len() == 20)
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(base) = base {
            segments.push((base, path));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The recorded cursor; `None` if there is none or it cannot be read (the relay then starts from
/// the first entry kept, which at worst sends some again).
fn read_cursor(dir: &Path) -> Result<Option<u64>, OutboxError> {
    let path = dir.join(CURSOR);
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(cursor) => Ok(Some(cursor)),
            Err(_) => {
                tracing::warn!(path = %path.display(), "Outbox cursor unreadable; the relay starts from the first entry kept");
                Ok(None)
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(OutboxError::Io { path, source: error }),
    }
}

/// Takes the directory's lock, waiting up to [`LOCK_WAIT`] for an earlier owner (a bus being
/// dropped) to let go of it.
/// Whether a bus holds the outbox in `dir` now (this process's or another's). Blocking.
pub(super) fn held(dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new().write(true).open(dir.join("lock")) else { return false };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(_)) => false,
    }
}

fn lock(dir: &Path) -> Result<File, OutboxError> {
    let path = dir.join("lock");
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(OutboxError::io(&path))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(OutboxError::InUse { dir: dir.to_path_buf() }),
            Err(fs::TryLockError::Error(source)) => return Err(OutboxError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests;
