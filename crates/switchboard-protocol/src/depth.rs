//! How deeply a JSON text nests. The server forwards payloads byte for byte
//! to recipients and to the application, whose parsers may recurse (and
//! fail, or overflow their stack) on a payload nested thousands deep; such
//! a payload is refused where it enters.

/// The deepest nesting of arrays and objects accepted in a client frame or
/// an HTTP API body, the frame's own object included. The `message` frame
/// that carries the payload to recipients nests exactly as deep, well within
/// common parsers' limits (serde_json refuses 128 levels by default).
pub const MAX_DEPTH: usize = 64;

/// Whether `json` nests arrays and objects deeper than `max`. One pass over
/// the bytes, skipping strings; the text need not be valid JSON (this only
/// counts brackets outside strings).
pub fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // To the closing quote, over escapes.
                i += 1;
                while i < json.len() {
                    match json[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_brackets_outside_strings_only() {
        assert!(!nests_deeper_than(br#"{"a":[1,{"b":[]}]}"#, 4));
        assert!(nests_deeper_than(br#"{"a":[1,{"b":[]}]}"#, 3));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(nests_deeper_than(deep.as_bytes(), MAX_DEPTH));
        assert!(!nests_deeper_than(
            &deep.as_bytes()[1..deep.len() - 1],
            MAX_DEPTH
        ));
        // Brackets in strings, escaped quotes included, do not count.
        let quoted = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(!nests_deeper_than(quoted.as_bytes(), 2));
        // Sequences one after another do not add up.
        assert!(!nests_deeper_than(b"[[]][[]][[]]", 2));
        // An unterminated string or a stray backslash at the end is safe.
        assert!(!nests_deeper_than(br#"["abc\"#, 2));
    }
}
