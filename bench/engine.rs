//! A rough benchmark of the engine's fast path (handle + pop_output for READ and WRITE on a
//! 20000-node tree, with and without a matching watcher or an open transaction), in time per
//! operation. Not a test: run with `cargo bench --bench engine`.

use xenstore::store::{Config, Store};
use xenstore::wire::{Header, MsgType as T};

fn main() {
    let mut s = Store::new(Config::default());
    let c = s.connect(0);
    let send = |s: &mut Store, ty: T, p: &[u8]| {
        let h = Header::new(ty, 1, 0, p.len() as u32);
        s.handle(c, &h, p).unwrap();
        while s.pop_output(c).is_some() {}
    };
    for d in 0..1000 {
        for k in 0..20 {
            send(
                &mut s,
                T::XS_WRITE,
                format!("/local/domain/{d}/device/vif/{k}\0value").as_bytes(),
            );
        }
    }
    let w = s.connect(0);
    for d in 0..1000 {
        let p = format!("/local/domain/{d}/device\0tok\0");
        let h = Header::new(T::XS_WATCH, 1, 0, p.len() as u32);
        s.handle(w, &h, p.as_bytes()).unwrap();
    }
    while s.pop_output(w).is_some() {}
    let rp = b"/local/domain/500/device/vif/7\0";
    let wp = b"/local/domain/500/device/vif/7\0newvalue";
    let n = 200_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        send(&mut s, T::XS_READ, rp);
    }
    eprintln!("READ  {:?}/op", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        send(&mut s, T::XS_WRITE, wp);
        while s.pop_output(w).is_some() {}
    }
    eprintln!("WRITE {:?}/op (with 1 matching watcher)", t.elapsed() / n);
    let wp2 = b"/local/domain/501/data\0newvalue";
    let t = std::time::Instant::now();
    for _ in 0..n {
        send(&mut s, T::XS_WRITE, wp2);
    }
    eprintln!("WRITE {:?}/op (no watcher)", t.elapsed() / n);
    let tx = {
        let h = Header::new(T::XS_TRANSACTION_START, 1, 0, 1);
        s.handle(c, &h, b"\0").unwrap();
        let m = s.pop_output(c).unwrap();
        String::from_utf8(m[16..m.len() - 1].to_vec())
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let t = std::time::Instant::now();
    for _ in 0..n {
        send(&mut s, T::XS_WRITE, wp2);
    }
    eprintln!("WRITE {:?}/op (txn open elsewhere)", t.elapsed() / n);
    assert_ne!(tx, 0);
    assert!(s.check().is_empty());
}
