//! TensorBoard event files, written without TensorFlow: TFRecord framing
//! around `tensorflow.Event` protos encoded by hand (the few fields used
//! here; field numbers from tensorflow/core/util/event.proto and
//! framework/summary.proto, tensor.proto).
//!
//! Each event is one `write` of a complete record, so a reader following the
//! file live sees whole records, and a killed writer leaves at most a torn
//! last one, which TensorBoard's reader stops at.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{io, GdaError};

/// The prefix TensorBoard looks for (`tfevents` in the name) and sorts by.
const PREFIX: &str = "events.out.tfevents.";

pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `events.out.tfevents.<unix secs>.<host>.<pid>.gda` in `dir`
    /// (made if missing) and writes the file-version event.
    ///
    /// TensorBoard reads a directory's event files in name order, so a file
    /// must sort after every earlier one: a resumed process started within
    /// the same second as the one it replaces (or whose pid sorts lower)
    /// takes the newest existing second plus one.
    pub fn create(dir: &Path) -> Result<EventWriter, GdaError> {
        fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let newest = fs::read_dir(dir)
            .map_err(io("cannot read", dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix(PREFIX)?.split('.').next()?.parse::<u64>().ok())
            .max();
        let secs = newest.map_or(now, |n| now.max(n + 1));
        let host = crate::util::host::hostname();
        let path = dir.join(format!("{PREFIX}{secs:010}.{host}.{}.gda", std::process::id()));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io("cannot create", &path))?;
        let mut w = EventWriter { file, path };
        let mut e = event(0);
        e.bytes(3, b"brain.Event:2");
        w.write(e)?;
        Ok(w)
    }

    /// A `SessionLog START` at `step`: TensorBoard then drops every event
    /// with a step ≥ `step` read from earlier files, which is how a resumed
    /// run replaces the steps it logs again.
    pub fn start(&mut self, step: u64) -> Result<(), GdaError> {
        let mut log = Proto::default();
        log.varint(1, 1); // status = START
        let mut e = event(step);
        e.message(7, &log);
        self.write(e)
    }

    /// One event holding a scalar summary per `(tag, value)`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f32)]) -> Result<(), GdaError> {
        let mut summary = Proto::default();
        for (tag, v) in values {
            let mut value = Proto::default();
            value.bytes(1, tag.as_bytes());
            value.fixed32(2, v.to_bits()); // simple_value
            summary.message(1, &value);
        }
        let mut e = event(step);
        e.message(5, &summary);
        self.write(e)
    }

    /// A text summary, shown in TensorBoard's TEXT tab (rendered as
    /// Markdown): a scalar `DT_STRING` tensor tagged for the "text" plugin,
    /// as `tensorboard.plugins.text.summary_v2.text_pb` writes it.
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> Result<(), GdaError> {
        let mut plugin = Proto::default();
        plugin.bytes(1, b"text"); // plugin_name; content: an empty TextPluginData
        let mut metadata = Proto::default();
        metadata.message(1, &plugin);
        let mut tensor = Proto::default();
        tensor.varint(1, 7); // dtype = DT_STRING
        tensor.message(2, &Proto::default()); // tensor_shape: a scalar
        tensor.bytes(8, text.as_bytes()); // string_val
        let mut value = Proto::default();
        value.bytes(1, tag.as_bytes());
        value.message(9, &metadata);
        value.message(8, &tensor);
        let mut summary = Proto::default();
        summary.message(1, &value);
        let mut e = event(step);
        e.message(5, &summary);
        self.write(e)
    }

    fn write(&mut self, event: Proto) -> Result<(), GdaError> {
        let record = record(&event.0);
        self.file.write_all(&record).and_then(|_| self.file.flush()).map_err(io("cannot write", &self.path))
    }
}

/// An `Event` with its wall time (now) and step set.
fn event(step: u64) -> Proto {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut p = Proto::default();
    p.fixed64(1, wall.to_bits());
    p.varint(2, step);
    p
}

/// A protobuf message being encoded, fields appended in the order given.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn key(&mut self, field: u32, wire_type: u8) {
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire_type));
    }
    fn varint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        put_varint(&mut self.0, v);
    }
    fn fixed64(&mut self, field: u32, v: u64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn fixed32(&mut self, field: u32, v: u32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn message(&mut self, field: u32, m: &Proto) {
        self.bytes(field, &m.0);
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// TFRecord framing: length (u64 LE), masked CRC of the length, payload,
/// masked CRC of the payload.
fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720 appendix B.4 and the CRC catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn varints_use_seven_bits_per_byte_low_first() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
