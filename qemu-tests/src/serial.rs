//! An interactive serial console: the client end of QEMU's
//! `-chardev socket,server=on` for the guest's ttyS0 (see
//! [`crate::vm::VmConfig::interactive_serial`]).
//!
//! What the guest writes is read here continuously (a full socket buffer
//! would stall the guest's UART) and kept as a transcript; QEMU also
//! writes it to the VM's serial log, which [`crate::vm::Vm`]'s waits read.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

/// The VT100 "cursor down" key, as a serial terminal sends it.
pub const KEY_DOWN: &[u8] = b"\x1b[B";
/// Ctrl-N ("next"), which GRUB's menu also takes for down.
pub const CTRL_N: &[u8] = b"\x0e";
/// Enter, as a serial terminal sends it.
pub const ENTER: &[u8] = b"\r";

/// A connected serial console.
#[derive(Debug)]
pub struct SerialConsole {
    stream: UnixStream,
    socket: PathBuf,
    transcript: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl SerialConsole {
    /// Wraps a connected stream and starts draining it.
    pub(crate) fn new(stream: UnixStream, socket: &Path) -> Result<Self> {
        let mut reading = stream
            .try_clone()
            .map_err(Error::io("duplicating", socket))?;
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&transcript);
        let reader = std::thread::Builder::new()
            .name("serial-console".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match reading.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]),
                    }
                }
            })
            .map_err(|source| Error::Spawn {
                command: "the serial console reader thread".into(),
                source,
            })?;
        Ok(Self {
            stream,
            socket: socket.to_path_buf(),
            transcript,
            reader: Some(reader),
        })
    }

    /// Sends bytes to the guest.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(Error::io("writing to", &self.socket))
    }

    /// Sends bytes one at a time with a pause between them, like a typist
    /// (a 16550 UART's FIFO is 16 bytes; a slow guest loses what overflows).
    pub fn type_slowly(&mut self, bytes: &[u8], pause: Duration) -> Result<()> {
        for byte in bytes {
            self.send(std::slice::from_ref(byte))?;
            std::thread::sleep(pause);
        }
        Ok(())
    }

    /// Sends a line: `text` and a carriage return.
    pub fn send_line(&mut self, text: &str) -> Result<()> {
        self.type_slowly(text.as_bytes(), Duration::from_millis(5))?;
        self.send(ENTER)
    }

    /// What the guest wrote since the connection, carriage returns removed.
    pub fn transcript(&self) -> String {
        let bytes = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
