//! Many clients at once on the single event-loop thread.

mod util;
use util::common;

use std::thread;

use common::*;
use xenstore::wire::MsgType;

#[test]
fn a_thousand_idle_clients_and_a_hundred_busy_ones() {
    // This process holds both ends' worth of sockets for the idle clients.
    xenstore::server::raise_fd_limit().unwrap();
    let d = Daemon::start("scale");

    let mut idle: Vec<Client> = (0..1000).map(|_| d.connect()).collect();
    // Every idle client is really connected and served.
    for (i, c) in idle.iter_mut().enumerate().step_by(97) {
        assert!(c.read("/").is_ok(), "idle client {i}");
    }

    let busy: Vec<_> = (0..100)
        .map(|t| {
            let path = d.socket.clone();
            thread::spawn(move || {
                let mut c = Client::connect(&path);
                let node = format!("/scale/busy{t}");
                for i in 0..200u32 {
                    c.write(&node, i.to_string().as_bytes());
                    assert_eq!(c.read(&node).unwrap(), i.to_string().as_bytes());
                }
                let mut dir = node.into_bytes();
                dir.push(0);
                c.ok(MsgType::XS_RM, 0, &dir);
            })
        })
        .collect();
    for b in busy {
        b.join().unwrap();
    }
    // The idle ones are still there and answered.
    for c in idle.iter_mut().step_by(50) {
        assert_eq!(c.read("/scale/busy3").unwrap_err(), "ENOENT");
    }
    drop(idle);
}
