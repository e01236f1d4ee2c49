use super::*;

#[test]
fn frame_round_trip_all_length_forms() {
    for n in [0usize, 1, 125, 126, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        for mask in [None, Some([1, 2, 3, 4])] {
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, mask);
            let h = parse_header(&out).unwrap().unwrap();
            assert!(h.fin);
            assert_eq!(h.opcode, OP_TEXT);
            assert_eq!(h.mask, mask);
            assert_eq!(h.payload_len, n);
            assert_eq!(h.header_len + n, out.len());
            let mut body = out[h.header_len..].to_vec();
            if let Some(m) = h.mask {
                apply_mask(&mut body, m);
            }
            assert_eq!(body, payload);
            // Any strict prefix of the header asks for more bytes.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&out[..cut]).unwrap(), None);
            }
        }
    }
}

#[test]
fn rejects_bad_headers() {
    assert!(parse_header(&[0xC1, 0]).is_err()); // RSV1
    assert!(parse_header(&[0x83, 0]).is_err()); // opcode 3
    assert!(parse_header(&[0x89, 126, 0, 200]).is_err()); // long ping
    assert!(parse_header(&[0x09, 0]).is_err()); // fragmented ping
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(u64::MAX).to_be_bytes());
    assert!(parse_header(&huge).is_err());
}

#[test]
fn response_heads() {
    let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
    let (s, n) = parse_response_head(r).unwrap().unwrap();
    assert_eq!(s, 101);
    assert_eq!(&r[n..], b"\x81\x02hi");
    assert_eq!(parse_response_head(b"HTTP/1.1 101 OK\r\n").unwrap(), None);
    assert_eq!(
        parse_response_head(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            .unwrap()
            .unwrap()
            .0,
        401
    );
    assert!(parse_response_head(b"SSH-2.0\r\n\r\n").is_err());
    assert!(parse_response_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
}
