//! The core's own hot paths, without Python: what the binding adds on top
//! of these is its per-call overhead (see benches/bench.py at the top).
//!
//! Run with `cargo bench -p mmapfile` (or `make bench-rust`).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mmapfile::{MapFile, MapOptions};

const MIB: usize = 1 << 20;

fn block(len: usize) -> MapFile {
    MapOptions::new()
        .maximum_size(len as u64)
        .open()
        .expect("an unnamed block")
}

fn per_call(c: &mut Criterion) {
    let mut m = block(MIB);
    let mut lines = Vec::new();
    while lines.len() + 80 <= MIB {
        lines.extend_from_slice(&[b'x'; 79]);
        lines.push(b'\n');
    }
    m.write(&lines).unwrap();
    let mut g = c.benchmark_group("per_call");
    g.bench_function("read_byte", |b| {
        b.iter(|| {
            m.seek(0, 0).unwrap();
            black_box(m.read_byte().unwrap())
        })
    });
    let mut buf = [0u8; 16];
    g.bench_function("read_into 16", |b| {
        b.iter(|| {
            m.seek(0, 0).unwrap();
            m.read_into(black_box(&mut buf)).unwrap();
        })
    });
    g.bench_function("write 16", |b| {
        b.iter(|| {
            m.seek(0, 0).unwrap();
            m.write(black_box(b"0123456789abcdef")).unwrap();
        })
    });
    g.bench_function("readline_len (80-byte lines)", |b| {
        b.iter(|| {
            m.seek(0, 0).unwrap();
            black_box(m.readline_len().unwrap())
        })
    });
    g.bench_function("tell", |b| b.iter(|| black_box(m.tell().unwrap())));
    g.finish();
}

fn bulk(c: &mut Criterion) {
    let n = 64 * MIB;
    let mut m = block(n);
    // Deterministic filler without the needles' bytes.
    let mut x = 0x9e37_79b9_u32;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect();
    m.write(&data).unwrap();
    m.write_at(n - 4096, b"NEEDLE-END-0123456").unwrap();
    m.write_at(4096, b"NEEDLE-START-01234").unwrap();
    m.write_at(n - 4000, b"\x01").unwrap();

    let mut g = c.benchmark_group("bulk_64MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(n as u64));
    let mut dst = vec![0u8; n];
    g.bench_function("read_into", |b| {
        b.iter(|| {
            m.seek(0, 0).unwrap();
            m.read_into(&mut dst).unwrap();
        })
    });
    g.bench_function("memcpy (the limit)", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&data)))
    });
    g.bench_function("find 1-byte, hit near end", |b| {
        b.iter(|| m.find(b"\x01", Some(0), None).unwrap())
    });
    g.bench_function("find 18-byte, hit near end", |b| {
        b.iter(|| m.find(b"NEEDLE-END-0123456", Some(0), None).unwrap())
    });
    g.bench_function("find 18-byte, no hit", |b| {
        b.iter(|| m.find(b"ABSENT-0123456789!", Some(0), None).unwrap())
    });
    g.bench_function("rfind 18-byte, hit near start", |b| {
        b.iter(|| m.rfind(b"NEEDLE-START-01234", Some(0), None).unwrap())
    });
    g.bench_function("rfind 18-byte, no hit", |b| {
        b.iter(|| m.rfind(b"ABSENT-0123456789!", Some(0), None).unwrap())
    });
    g.finish();
}

fn open_close(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    let pid = std::process::id();
    let mut k = 0u64;
    g.bench_function("unnamed 4 KiB open+close", |b| {
        b.iter(|| block(4096).close().unwrap())
    });
    g.bench_function("named 4 KiB create+close", |b| {
        b.iter_batched(
            || {
                k += 1;
                format!("criterion-{pid}-{k}")
            },
            |name| {
                let mut m = MapOptions::new()
                    .name(name.as_str())
                    .maximum_size(4096)
                    .open()
                    .unwrap();
                m.close().unwrap();
                // Closed named blocks persist on POSIX: remove ours.
                let _ = std::fs::remove_file(format!("/dev/shm/mmapfile.{name}"));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, per_call, bulk, open_close);
criterion_main!(benches);
