//! [`Json`]: JSON text that was checked, shared without copying. What the
//! node publishes is always one of these, so nothing unchecked reaches the
//! recipients' frames.

use bytes::Bytes;
use serde_json::value::RawValue;

/// JSON text that was checked (it was parsed as a [`RawValue`]). Cheap to
/// clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json(Bytes);

impl Json {
    /// A copy of `value`'s text.
    pub fn from_raw(value: &RawValue) -> Self {
        Json(Bytes::copy_from_slice(value.get().as_bytes()))
    }

    /// `value`'s text, sharing `buf`'s storage, when `value` was parsed out
    /// of `buf` (deserialized borrowing from it); `None` when it lies
    /// elsewhere.
    pub fn within(buf: &Bytes, value: &RawValue) -> Option<Self> {
        let text = value.get().as_bytes();
        let start = (text.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
        let end = start.checked_add(text.len())?;
        (end <= buf.len()).then(|| Json(buf.slice(start..end)))
    }

    /// JSON `null`.
    pub fn null() -> Self {
        Json(Bytes::from_static(b"null"))
    }

    /// An owned raw value of the same text (a copy).
    pub fn to_raw(&self) -> Box<RawValue> {
        // The text was checked when this was made, so it parses again.
        RawValue::from_string(self.as_str().to_owned()).unwrap_or_default()
    }

    /// A value serialized to JSON.
    pub fn from_value<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::to_vec(value).map(|v| Json(Bytes::from(v)))
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never, for text that was checked).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Parsed JSON is UTF-8; the check is fast and keeps this safe code.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Text the caller has already checked (a slice of a parsed client
    /// frame).
    pub(crate) fn checked(text: Bytes) -> Self {
        Json(text)
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_shares_the_buffer_only_for_a_value_parsed_from_it() {
        let buf = Bytes::from_static(br#"{"data": {"a": 1}}"#);
        #[derive(serde::Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        let body: Body<'_> = serde_json::from_slice(&buf).unwrap();
        let json = Json::within(&buf, body.data).unwrap();
        assert_eq!(json.as_str(), r#"{"a": 1}"#);
        assert_eq!(json.0.as_ptr(), buf[9..].as_ptr(), "no copy");
        let elsewhere: Box<RawValue> = serde_json::from_str("[1]").unwrap();
        assert_eq!(Json::within(&buf, &elsewhere), None);
        assert_eq!(Json::from_raw(&elsewhere).as_str(), "[1]");
    }
}
