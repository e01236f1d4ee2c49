//! The crate's only `unsafe` code, each block with the proof that it is
//! sound. Everything else is safe code (`unsafe_code` is denied for the
//! whole workspace and allowed only here), and what this module offers is a
//! safe interface: no caller can break the invariants the proofs rely on.

#![allow(unsafe_code)]

use std::sync::Arc;

use tokio::net::TcpStream;

/// A TCP stream together with its descriptor, kept beside the stream's
/// handle so that a flusher walking thousands of connections can write to
/// each socket without loading the stream object itself (a cache miss per
/// connection) just to read this number.
pub(crate) struct StreamFd {
    #[cfg_attr(
        unix,
        allow(
            dead_code,
            reason = "held for its count on the stream, which keeps `fd` open"
        )
    )]
    stream: Arc<TcpStream>,
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl StreamFd {
    /// The descriptor of `stream`, read once, and a count on the stream.
    pub(crate) fn new(stream: Arc<TcpStream>) -> Self {
        StreamFd {
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(&*stream),
            stream,
        }
    }

    /// Calls `f` with the socket, for a non-blocking `send`.
    pub(crate) fn with_sock<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        #[cfg(unix)]
        {
            // SAFETY: `BorrowedFd::borrow_raw` needs the descriptor to stay
            // open for the borrow's lifetime, which ends before this call returns. `fd`
            // was read from `self.stream` in `new` (the only place either
            // field is set; neither is ever replaced), a `TcpStream` closes
            // its descriptor only when dropped, and `self.stream` holds a
            // count on it for as long as `self` exists, and `self` is
            // borrowed for this whole call.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
            f(socket2::SockRef::from(&borrowed))
        }
        #[cfg(not(unix))]
        f(socket2::SockRef::from(&*self.stream))
    }
}

/// Hints the CPU to load the cache lines at `value` and just past it (the
/// next 64 bytes): a flusher calls it for the next connection on its list
/// while the current one's write runs. Does nothing off x86-64.
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = std::ptr::from_ref(value).cast::<i8>();
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it
        // is part of the target's baseline). A prefetch is only a hint: it
        // reads nothing architecturally and never faults, so any address is
        // sound; these two point into `value` and just past it.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_borrowed_socket_is_the_streams_own() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let fd = StreamFd::new(Arc::new(client));
        assert_eq!(
            fd.with_sock(|s| s.local_addr().unwrap().as_socket()),
            fd.stream.local_addr().ok()
        );
        fd.with_sock(|s| s.send(b"hi")).unwrap();
        let mut got = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut server, &mut got)
            .await
            .unwrap();
        assert_eq!(&got, b"hi");
        prefetch(&fd);
    }
}
