//! Large searches are split across threads: matches on the boundaries
//! between the parts, and first/last semantics, must be exactly those of a
//! plain search.

use mmapfile::MapOptions;

const LEN: usize = 48 << 20;
const NEEDLE: &[u8] = b"NEEDLE-0123456789";

/// Every place where a part boundary can fall for 2, 3 or 4 threads.
fn boundaries() -> Vec<usize> {
    let mut b: Vec<usize> = (2..=4)
        .flat_map(|threads| (1..threads).map(move |k| k * LEN.div_ceil(threads)))
        .collect();
    b.sort_unstable();
    b.dedup();
    b
}

fn naive_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn matches_straddling_part_boundaries_are_found_in_order() {
    let mut m = MapOptions::new().maximum_size(LEN as u64).open().unwrap();
    // Matches that start just before each boundary, so they straddle it.
    let starts: Vec<usize> = boundaries().iter().map(|b| b - 5).collect();
    for &s in &starts {
        m.write_at(s, NEEDLE).unwrap();
    }
    let mut copy = vec![0; LEN];
    m.read_at(0, &mut copy).unwrap();
    let all = naive_all(&copy, NEEDLE);
    assert_eq!(all, starts);

    assert_eq!(m.find(NEEDLE, Some(0), None).unwrap(), Some(starts[0]));
    assert_eq!(
        m.rfind(NEEDLE, Some(0), None).unwrap(),
        Some(*starts.last().unwrap())
    );
    // From just after each match, the next one; up to just before it, the previous one.
    for pair in starts.windows(2) {
        let from = pair[0] as i64 + 1;
        assert_eq!(m.find(NEEDLE, Some(from), None).unwrap(), Some(pair[1]));
        let to = (pair[1] + NEEDLE.len() - 1) as i64; // cuts the second match short
        assert_eq!(m.rfind(NEEDLE, Some(0), Some(to)).unwrap(), Some(pair[0]));
    }
    // A needle that is nowhere.
    assert_eq!(m.find(b"ABSENT-0123456789", Some(0), None).unwrap(), None);
    assert_eq!(m.rfind(b"ABSENT-0123456789", Some(0), None).unwrap(), None);
}

#[test]
fn a_lone_match_straddling_a_part_boundary_is_found_over_the_whole_range() {
    // The parts of a search of the whole view (start 0, end LEN) end at
    // these boundaries, whatever the number of threads (2 to 4).
    let mut m = MapOptions::new().maximum_size(LEN as u64).open().unwrap();
    for b in boundaries() {
        for shift in [1, 5, NEEDLE.len() - 1] {
            let at = b - shift;
            m.write_at(at, NEEDLE).unwrap();
            assert_eq!(
                m.find(NEEDLE, Some(0), None).unwrap(),
                Some(at),
                "find, boundary {b}"
            );
            assert_eq!(
                m.rfind(NEEDLE, Some(0), None).unwrap(),
                Some(at),
                "rfind, boundary {b}"
            );
            m.write_at(at, &[0; NEEDLE.len()]).unwrap();
        }
    }
}

#[test]
fn one_byte_needles_on_part_boundaries() {
    let mut m = MapOptions::new().maximum_size(LEN as u64).open().unwrap();
    let marks = boundaries();
    for &b in &marks {
        m.write_at(b, &[7]).unwrap();
        m.write_at(b - 1, &[7]).unwrap();
    }
    assert_eq!(m.find(&[7], Some(0), None).unwrap(), Some(marks[0] - 1));
    assert_eq!(
        m.rfind(&[7], Some(0), None).unwrap(),
        Some(*marks.last().unwrap())
    );
    assert_eq!(
        m.find(&[7], Some(marks[0] as i64 + 1), None).unwrap(),
        Some(marks[1] - 1)
    );
}

/// A partial search and, when it says so, a full search of the rest give
/// exactly what one full search gives, for matches on every side of the
/// part's edge and every kind of bounds.
#[test]
fn a_partial_search_and_its_rest_agree_with_a_full_search() {
    use mmapfile::{MapFile, Partial};
    let len = 600;
    let mut m = MapOptions::new().maximum_size(len as u64).open().unwrap();
    // A small alphabet: many matches, overlapping ones, and ones across the
    // part's edge for every budget below.
    let mut state = 0x1234_5678_u32;
    let hay: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b"ab"[(state % 2) as usize]
        })
        .collect();
    m.write_at(0, &hay).unwrap();
    type Whole = fn(&MapFile, &[u8], Option<i64>, Option<i64>) -> mmapfile::Result<Option<usize>>;
    type Part = fn(&MapFile, &[u8], Option<i64>, Option<i64>, usize) -> mmapfile::Result<Partial>;
    let pairs: [(Part, Whole); 2] = [
        (MapFile::find_partial, MapFile::find),
        (MapFile::rfind_partial, MapFile::rfind),
    ];
    let bounds = [
        (None, None),
        (Some(0), Some(len as i64)),
        (Some(17), Some(400)),
        (Some(-300), Some(-3)),
        (Some(500), Some(100)),
    ];
    let mut rests = 0;
    for needle in [
        &b""[..],
        b"a",
        b"ab",
        b"abba",
        b"aaaaaa",
        b"bbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ] {
        for (partial, whole) in pairs {
            for (start, end) in bounds {
                for budget in [0, 1, 2, 5, 64, 399, 1000] {
                    let expected = whole(&m, needle, start, end).unwrap();
                    let got = match partial(&m, needle, start, end, budget).unwrap() {
                        Partial::Done(found) => found,
                        Partial::Rest { start: s, end: e } => {
                            rests += 1;
                            whole(&m, needle, Some(s as i64), Some(e as i64)).unwrap()
                        }
                    };
                    assert_eq!(
                        got, expected,
                        "{needle:?} {start:?} {end:?} budget {budget}"
                    );
                }
            }
        }
    }
    // The rest is handed back often enough for the comparison to mean something.
    assert!(rests > 50, "{rests}");
}
