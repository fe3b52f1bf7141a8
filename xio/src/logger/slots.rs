//! The layout of a small record that is replaced **in place**, in one of two slots (the
//! log directory's `state` file): once the file exists, storing a new state needs no new
//! space (a full log file system must not stop the logger from recording that it gave up on
//! the log), no rename and no directory sync.
//!
//! A file is two [`SLOT`]-byte slots. A slot: magic `MARSSLOT`, generation (u64), payload
//! length (u32), crc32c over those 20 bytes and the payload (u32), payload; zeroes after.
//! A store writes generation `g + 1` into the slot that does not hold the newest generation
//! `g`, then syncs: a torn slot fails its checksum and the other slot (generation `g`) is
//! read. Invariant: the slot being overwritten never holds the newest valid state.

/// Size of one slot (a page: written as a unit by the file system).
pub(crate) const SLOT: usize = 4096;
/// Size of a slotted file.
pub(crate) const FILE_LEN: usize = 2 * SLOT;
const MAGIC: &[u8; 8] = b"MARSSLOT";
const HEADER: usize = 24;
/// Longest payload a slot holds.
pub(crate) const MAX_PAYLOAD: usize = SLOT - HEADER;

/// Slot `generation` holding `payload` (at most [`MAX_PAYLOAD`] bytes).
pub(crate) fn encode(generation: u64, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_PAYLOAD, "state too large for a slot");
    let mut b = vec![0u8; SLOT];
    b[0..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    b[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[HEADER..HEADER + payload.len()].copy_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..20]), payload);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A whole slotted file holding `payload` as generation 1 (the other slot empty).
pub(crate) fn first_file(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; FILE_LEN];
    let at = offset_of(1) as usize;
    f[at..at + SLOT].copy_from_slice(&encode(1, payload));
    f
}

/// The slot's generation and payload, if it is intact.
fn decode(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() < HEADER || &slot[0..8] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(slot[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(slot[20..24].try_into().ok()?);
    let payload = slot.get(HEADER..HEADER + len)?;
    (crc32c::crc32c_append(crc32c::crc32c(&slot[..20]), payload) == crc)
        .then_some((generation, payload))
}

/// The newest intact slot of a slotted file: `(generation, payload)`; `None` when neither
/// slot is intact (never written, or both damaged).
pub(crate) fn newest(file: &[u8]) -> Option<(u64, Vec<u8>)> {
    file.chunks(SLOT)
        .take(2)
        .filter_map(decode)
        .max_by_key(|(g, _)| *g)
        .map(|(g, p)| (g, p.to_vec()))
}

/// Byte offset of the slot that generation `generation` is written to.
pub(crate) fn offset_of(generation: u64) -> u64 {
    (generation % 2) * SLOT as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file_after(stores: &[&[u8]]) -> Vec<u8> {
        let mut f = first_file(stores[0]);
        for (i, p) in stores.iter().enumerate().skip(1) {
            let g = i as u64 + 1;
            let at = offset_of(g) as usize;
            f[at..at + SLOT].copy_from_slice(&encode(g, p));
        }
        f
    }

    #[test]
    fn the_newest_store_wins_and_an_empty_file_has_none() {
        assert_eq!(newest(&vec![0u8; FILE_LEN]), None);
        let f = file_after(&[b"one", b"two", b"three"]);
        assert_eq!(newest(&f), Some((3, b"three".to_vec())));
    }

    proptest! {
        /// A store torn anywhere (any prefix of its slot written, the rest old) reads back as
        /// the previous state or the new one, never as anything else.
        #[test]
        fn a_torn_store_reads_as_the_old_or_the_new_state(
            old in prop::collection::vec(any::<u8>(), 0..200),
            new in prop::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..SLOT,
            flip in any::<Option<(u16, u8)>>(),
        ) {
            let mut f = file_after(&[b"first", &old]);
            let slot = encode(3, &new);
            let at = offset_of(3) as usize;
            f[at..at + cut].copy_from_slice(&slot[..cut]);
            if let Some((i, x)) = flip {
                // Garbage in the slot being written (a torn sector), never in the other one.
                let i = at + (i as usize % SLOT);
                if i >= at + cut && x != 0 { f[i] ^= x; }
            }
            let got = newest(&f).expect("the old slot is intact");
            prop_assert!(got == (2, old.clone()) || got == (3, new.clone()), "{got:?}");
        }
    }
}
