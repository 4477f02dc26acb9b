//! Property test of the core's operations: random sequences run on a
//! `MapFile` and on a `Vec<u8>` model must give the same results, errors
//! (by kind), positions and contents. Any arithmetic slip in a bounds check
//! shows up here as a mismatch or a panic.

use mmapfile::{Error, MapFile, MapOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Read(i64),
    ReadByte,
    Readline,
    Write(Vec<u8>),
    WriteByte(u8),
    Seek(i64, i32),
    Find(Vec<u8>, Option<i64>, Option<i64>),
    Rfind(Vec<u8>, Option<i64>, Option<i64>),
    Move(i64, i64, i64),
    Flush(i64, i64),
    ReadAt(usize, usize),
    WriteAt(usize, Vec<u8>),
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -80i64..400,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let bytes =
        || proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..24);
    let bound = || proptest::option::of(int());
    prop_oneof![
        int().prop_map(Op::Read),
        Just(Op::ReadByte),
        Just(Op::Readline),
        bytes().prop_map(Op::Write),
        any::<u8>().prop_map(Op::WriteByte),
        (int(), -1i32..4).prop_map(|(d, h)| Op::Seek(d, h)),
        (bytes(), bound(), bound()).prop_map(|(n, s, e)| Op::Find(n, s, e)),
        (bytes(), bound(), bound()).prop_map(|(n, s, e)| Op::Rfind(n, s, e)),
        (int(), int(), int()).prop_map(|(d, s, c)| Op::Move(d, s, c)),
        (int(), int()).prop_map(|(o, s)| Op::Flush(o, s)),
        (0usize..400, 0usize..64).prop_map(|(o, n)| Op::ReadAt(o, n)),
        (prop_oneof![0usize..400, Just(usize::MAX)], bytes()).prop_map(|(o, d)| Op::WriteAt(o, d)),
    ]
}

/// What each operation returned, with errors reduced to their kind.
#[derive(Debug, PartialEq)]
enum Out {
    Unit,
    Bytes(Vec<u8>),
    Pos(usize),
    Found(Option<usize>),
    Err(&'static str),
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::OutOfRange(_) => "range",
        Error::InvalidArgument(_) => "argument",
        other => panic!("unexpected error {other:?}"),
    }
}

fn out<T>(r: mmapfile::Result<T>, f: impl FnOnce(T) -> Out) -> Out {
    r.map_or_else(|e| Out::Err(kind(&e)), f)
}

struct Model {
    data: Vec<u8>,
    pos: usize,
}

fn clamp(i: Option<i64>, default: usize, len: usize) -> usize {
    match i {
        None => default,
        Some(i) if i < 0 => (len as i128 + i as i128).max(0) as usize,
        Some(i) => (i as i128).min(len as i128) as usize,
    }
}

impl Model {
    fn search(&self, needle: &[u8], s: Option<i64>, e: Option<i64>, last: bool) -> Out {
        let len = self.data.len();
        // A start past the end finds nothing, not even an empty needle
        // (bytes.find and CPython 3.15's mmap, docs/migrating.md).
        if s.is_some_and(|s| s > len as i64) {
            return Out::Found(None);
        }
        let (s, e) = (clamp(s, self.pos, len), clamp(e, len, len));
        if e < s || e - s < needle.len() {
            return Out::Found(None);
        }
        let hay = &self.data[s..e];
        let hits = (0..=hay.len() - needle.len()).filter(|&i| &hay[i..i + needle.len()] == needle);
        let mut hits = hits;
        let hit = if last { hits.next_back() } else { hits.next() };
        Out::Found(hit.map(|i| i + s))
    }

    fn apply(&mut self, op: &Op) -> Out {
        let len = self.data.len();
        let range = Out::Err("range");
        match op {
            Op::Read(n) => {
                let left = len - self.pos;
                let n = if *n < 0 {
                    left
                } else {
                    (*n as u64).min(left as u64) as usize
                };
                self.pos += n;
                Out::Bytes(self.data[self.pos - n..self.pos].to_vec())
            }
            Op::ReadByte if self.pos < len => {
                self.pos += 1;
                Out::Bytes(vec![self.data[self.pos - 1]])
            }
            Op::ReadByte => range,
            Op::Readline => {
                let end = self.data[self.pos..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(len, |i| self.pos + i + 1);
                let line = self.data[self.pos..end].to_vec();
                self.pos = end;
                Out::Bytes(line)
            }
            Op::Write(d) if self.pos + d.len() <= len => {
                self.data[self.pos..self.pos + d.len()].copy_from_slice(d);
                self.pos += d.len();
                Out::Unit
            }
            Op::Write(_) => range,
            Op::WriteByte(b) if self.pos < len => {
                self.data[self.pos] = *b;
                self.pos += 1;
                Out::Unit
            }
            Op::WriteByte(_) => range,
            Op::Seek(dist, how) => {
                let (d, size, pos) = (*dist as i128, len as i128, self.pos as i128);
                let target = match how {
                    0 => d,
                    1 => pos + d,
                    2 if d < 0 => size + d,
                    2 => size - d,
                    _ => return Out::Err("argument"),
                };
                if !(0..=size).contains(&target) {
                    return range;
                }
                self.pos = target as usize;
                Out::Pos(self.pos)
            }
            Op::Find(n, s, e) => self.search(n, *s, *e, false),
            Op::Rfind(n, s, e) => self.search(n, *s, *e, true),
            Op::Move(d, s, c) => {
                let ok = |x: i64| x >= 0 && *c >= 0 && (x as i128 + *c as i128) <= len as i128;
                if !(ok(*d) && ok(*s)) {
                    return range;
                }
                let (d, s, c) = (*d as usize, *s as usize, *c as usize);
                self.data.copy_within(s..s + c, d);
                Out::Unit
            }
            Op::Flush(o, s) => {
                if *o < 0 || *o as u64 > len as u64 || *s < 0 {
                    return range;
                }
                let o = *o as usize;
                let s = if *s == 0 { len - o } else { *s as u64 as usize };
                if (o as u128 + s as u128) > len as u128 {
                    return range;
                }
                Out::Unit
            }
            Op::ReadAt(o, n) if o + n <= len => Out::Bytes(self.data[*o..o + n].to_vec()),
            Op::ReadAt(..) => range,
            Op::WriteAt(o, d) if o.checked_add(d.len()).is_some_and(|e| e <= len) => {
                self.data[*o..o + d.len()].copy_from_slice(d);
                Out::Unit
            }
            Op::WriteAt(..) => range,
        }
    }
}

fn apply(m: &mut MapFile, op: &Op) -> Out {
    match op {
        Op::Read(n) => out(m.read(*n), Out::Bytes),
        Op::ReadByte => out(m.read_byte(), |b| Out::Bytes(vec![b])),
        Op::Readline => out(m.readline(), Out::Bytes),
        Op::Write(d) => out(m.write(d), |()| Out::Unit),
        Op::WriteByte(b) => out(m.write_byte(*b), |()| Out::Unit),
        Op::Seek(d, h) => out(m.seek(*d, *h), Out::Pos),
        Op::Find(n, s, e) => out(m.find(n, *s, *e), Out::Found),
        Op::Rfind(n, s, e) => out(m.rfind(n, *s, *e), Out::Found),
        Op::Move(d, s, c) => out(m.move_within(*d, *s, *c), |()| Out::Unit),
        Op::Flush(o, s) => out(m.flush(*o, *s), |()| Out::Unit),
        Op::ReadAt(o, n) => {
            let mut buf = vec![0; *n];
            out(m.read_at(*o, &mut buf), |()| Out::Bytes(buf))
        }
        Op::WriteAt(o, d) => out(m.write_at(*o, d), |()| Out::Unit),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MMAPFILE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn operations_match_a_vec_model(
        initial in proptest::collection::vec(any::<u8>(), 1..300),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        // An unnamed block starts zeroed; write the initial bytes through it.
        let mut m = MapOptions::new().maximum_size(initial.len() as u64).open().unwrap();
        m.write_at(0, &initial).unwrap();
        let mut model = Model { data: initial, pos: 0 };
        for op in &ops {
            let got = apply(&mut m, op);
            let expected = model.apply(op);
            prop_assert_eq!(&got, &expected, "{:?}", op);
            prop_assert_eq!(m.tell().unwrap(), model.pos, "position after {:?}", op);
        }
        let mut all = vec![0; model.data.len()];
        m.read_at(0, &mut all).unwrap();
        prop_assert_eq!(all, model.data);
        m.close().unwrap();
    }
}
