//! RFC 6455 framing: opcodes and close codes, encoding of server frames
//! ([`FrameBuilder`]) and incremental decoding of client frames
//! ([`Decoder`]). No extension is negotiated, so frames with RSV bits set are
//! rejected.

pub mod decoder;
pub mod frame;

pub use decoder::{CloseFrame, DecodeError, Decoder, Message};
pub use frame::{FrameBuilder, OpCode};
