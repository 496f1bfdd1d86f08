//! The control prefix: the 32 bytes in front of every SEND, which say what kind of message
//! follows (a frame, a request to send a bulk frame, a clear-to-send, returned credits, the
//! goodbye, a landing region advertised, a frame landed in one) and carry the bulk transfer's
//! token, address, key and length.
//!
//! Pure encoding, no verbs types: the byte layout is part of the wire format between two
//! ferrops processes and must not change.

/// Our message prefix.
pub(super) const CTRL_LEN: usize = 32;

pub(super) const KIND_FRAME: u32 = 1;
pub(super) const KIND_FRAME_DIRECT: u32 = 2;
pub(super) const KIND_RTS: u32 = 3;
pub(super) const KIND_CTS: u32 = 4;
pub(super) const KIND_CREDIT: u32 = 5;
pub(super) const KIND_BYE: u32 = 6;
pub(super) const KIND_ADVERT: u32 = 7;
pub(super) const KIND_LANDED: u32 = 8;

/// The 32-byte prefix of every SEND.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ctrl {
    pub(super) kind: u32,
    pub(super) rkey: u32,
    pub(super) token: u64,
    pub(super) addr: u64,
    pub(super) len: u64,
}

impl Ctrl {
    pub(super) fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.kind.to_le_bytes());
        out[4..8].copy_from_slice(&self.rkey.to_le_bytes());
        out[8..16].copy_from_slice(&self.token.to_le_bytes());
        out[16..24].copy_from_slice(&self.addr.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
    }

    pub(super) fn decode(b: &[u8]) -> Option<Ctrl> {
        let b = b.get(..CTRL_LEN)?;
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Ctrl {
            kind: u32_at(0),
            rkey: u32_at(4),
            token: u64_at(8),
            addr: u64_at(16),
            len: u64_at(24),
        })
    }

    /// Whether a message of `kind` hands the peer a frame (and so keeps its place in line).
    pub(super) fn delivers_frame(kind: u32) -> bool {
        matches!(kind, KIND_FRAME | KIND_FRAME_DIRECT | KIND_LANDED)
    }

    pub(super) fn costs_credit(kind: u32) -> bool {
        !matches!(kind, KIND_CREDIT | KIND_BYE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_little_endian_in_field_order() {
        let ctrl = Ctrl {
            kind: KIND_CTS,
            rkey: 0x0403_0201,
            token: 0x0c0b_0a09_0807_0605,
            addr: 0x1413_1211_100f_0e0d,
            len: 0x1c1b_1a19_1817_1615,
        };
        let mut out = [0u8; CTRL_LEN];
        ctrl.encode(&mut out);
        let mut want = [0u8; CTRL_LEN];
        want[..4].copy_from_slice(&[4, 0, 0, 0]);
        for (i, b) in want[4..].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        assert_eq!(out, want);
    }

    #[test]
    fn decode_reads_back_what_encode_wrote() {
        let ctrl = Ctrl {
            kind: KIND_RTS,
            rkey: 7,
            token: u64::MAX - 3,
            addr: 0xdead_beef_0000,
            len: 1 << 40,
        };
        // Decoding ignores what follows the prefix (the frame).
        let mut msg = vec![0xffu8; CTRL_LEN + 80];
        ctrl.encode(&mut msg[..CTRL_LEN]);
        let back = Ctrl::decode(&msg).expect("a whole prefix");
        assert_eq!(
            (back.kind, back.rkey, back.token, back.addr, back.len),
            (ctrl.kind, ctrl.rkey, ctrl.token, ctrl.addr, ctrl.len)
        );
    }

    #[test]
    fn a_short_message_has_no_prefix() {
        assert!(Ctrl::decode(&[0u8; CTRL_LEN - 1]).is_none());
        assert!(Ctrl::decode(&[]).is_none());
    }

    #[test]
    fn only_credit_returns_and_the_goodbye_are_free() {
        for kind in [
            KIND_FRAME,
            KIND_FRAME_DIRECT,
            KIND_RTS,
            KIND_CTS,
            KIND_ADVERT,
            KIND_LANDED,
        ] {
            assert!(Ctrl::costs_credit(kind), "kind {kind}");
        }
        assert!(!Ctrl::costs_credit(KIND_CREDIT));
        assert!(!Ctrl::costs_credit(KIND_BYE));
    }

    #[test]
    fn only_frames_keep_their_place_in_line() {
        for kind in [KIND_FRAME, KIND_FRAME_DIRECT, KIND_LANDED] {
            assert!(Ctrl::delivers_frame(kind), "kind {kind}");
        }
        for kind in [KIND_RTS, KIND_CTS, KIND_CREDIT, KIND_BYE, KIND_ADVERT] {
            assert!(!Ctrl::delivers_frame(kind), "kind {kind}");
        }
    }

    #[test]
    fn kinds_keep_their_wire_numbers() {
        assert_eq!(
            [
                KIND_FRAME,
                KIND_FRAME_DIRECT,
                KIND_RTS,
                KIND_CTS,
                KIND_CREDIT,
                KIND_BYE,
                KIND_ADVERT,
                KIND_LANDED
            ],
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
