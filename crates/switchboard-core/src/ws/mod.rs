//! RFC 6455 framing: opcodes and close codes, encoding of server frames
//! ([`FrameBuilder`]) and incremental decoding of client frames
//! ([`Decoder`]). No extension is negotiated, so frames with RSV bits set are
//! rejected.

pub(crate) mod decoder;
pub(crate) mod frame;

pub(crate) use decoder::{Decoder, Drained, Message};
pub(crate) use frame::{FrameBuilder, OpCode};
