//! Reads pieces (blocks) on several threads ahead of one consumer that takes them in order:
//! the read side of get to a stream, `volume read` and the private blocks of `volume export`.
//!
//! Invariants:
//! - `consume` sees every job exactly once, in the order `jobs` yields them, and never a job
//!   after the first error (a failed read, or an error `consume` returned).
//! - At most `pipeline_depth(threads)` jobs are read and not yet consumed; their buffers are
//!   reused, so memory is that many blocks whatever the length of `jobs`.
//! - Every reader thread has ended when [`read_in_order`] returns.

use super::ingest::pipeline_depth;
use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// How a reader fills a buffer for one job (the buffer holds a previous job's bytes).
pub type ReadFn<'a, J> = dyn Fn(&J, &mut Vec<u8>) -> Result<()> + Sync + 'a;

/// Runs `read` for each of `jobs` on `threads` threads and hands each job, with the bytes read
/// for it, to `consume` in the order of `jobs`. Stops at the first error, read or consume, and
/// returns it; an interrupt (SIGINT, SIGTERM) stops it between two jobs.
pub fn read_in_order<J: Send>(
    threads: usize,
    jobs: impl IntoIterator<Item = J>,
    read: &ReadFn<'_, J>,
    consume: &mut dyn FnMut(J, &[u8]) -> Result<()>,
) -> Result<()> {
    let threads = threads.max(1);
    let window = pipeline_depth(threads);
    let (job_tx, job_rx) = channel::<(u64, J, Vec<u8>)>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<(u64, J, Result<Vec<u8>>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || reader(&job_rx, &done_tx, read));
        }
        drop(done_tx);
        let result = (|| -> Result<()> {
            let mut jobs = jobs.into_iter();
            let mut free: Vec<Vec<u8>> = Vec::new();
            // Read and waiting for their turn, by sequence number.
            let mut pending: BTreeMap<u64, (J, Vec<u8>)> = BTreeMap::new();
            let (mut sent, mut next) = (0u64, 0u64);
            let mut exhausted = false;
            loop {
                crate::interrupt::check()?;
                while !exhausted && sent - next < window as u64 {
                    match jobs.next() {
                        Some(job) => {
                            let buf = free.pop().unwrap_or_default();
                            job_tx.send((sent, job, buf)).expect("readers alive");
                            sent += 1;
                        }
                        None => exhausted = true,
                    }
                }
                if next == sent {
                    return Ok(());
                }
                let (job, buf) = loop {
                    if let Some(ready) = pending.remove(&next) {
                        break ready;
                    }
                    let (seq, job, read) = done_rx.recv().expect("readers alive");
                    pending.insert(seq, (job, read?));
                };
                consume(job, &buf)?;
                free.push(buf);
                next += 1;
            }
        })();
        // Readers end when the job channel closes; what they still send is dropped.
        drop(job_tx);
        result
    })
}

fn reader<J>(
    jobs: &Mutex<Receiver<(u64, J, Vec<u8>)>>,
    done: &Sender<(u64, J, Result<Vec<u8>>)>,
    read: &ReadFn<'_, J>,
) {
    loop {
        let Ok((seq, job, mut buf)) = jobs.lock().unwrap().recv() else {
            return;
        };
        let result = read(&job, &mut buf).map(|()| buf);
        if done.send((seq, job, result)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fill(job: &u64, buf: &mut Vec<u8>) -> Result<()> {
        // Later jobs finish first now and then, so order is the consumer's doing.
        if job % 7 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        buf.clear();
        buf.extend_from_slice(&job.to_le_bytes());
        Ok(())
    }

    #[test]
    fn every_job_is_consumed_once_in_order() {
        for threads in [1, 2, 8] {
            let mut seen = Vec::new();
            read_in_order(threads, 0..500u64, &fill, &mut |job, bytes| {
                assert_eq!(bytes, job.to_le_bytes());
                seen.push(job);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, (0..500).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    #[test]
    fn no_jobs_is_fine() {
        read_in_order(4, std::iter::empty::<u64>(), &fill, &mut |_, _| {
            panic!("no job")
        })
        .unwrap();
    }

    #[test]
    fn a_failed_read_stops_before_its_job_and_nothing_after_is_consumed() {
        let read = |job: &u64, buf: &mut Vec<u8>| -> Result<()> {
            if *job == 100 {
                return Err(Error::invalid("bad block 100"));
            }
            fill(job, buf)
        };
        let mut seen = Vec::new();
        let err = read_in_order(4, 0..1000u64, &read, &mut |job, _| {
            seen.push(job);
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("bad block 100"), "{err}");
        assert!(seen.iter().all(|&j| j < 100), "{seen:?}");
        assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_consumer_error_stops_the_readers_within_the_window() {
        let reads = AtomicUsize::new(0);
        let read = |job: &u64, buf: &mut Vec<u8>| -> Result<()> {
            reads.fetch_add(1, Ordering::Relaxed);
            fill(job, buf)
        };
        let threads = 3;
        let err = read_in_order(threads, 0..100_000u64, &read, &mut |job, _| {
            if job == 10 {
                return Err(Error::invalid("sink full"));
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("sink full"), "{err}");
        // Jobs 0..=10 consumed, at most a window more read.
        assert!(reads.load(Ordering::Relaxed) <= 11 + pipeline_depth(threads));
    }

    #[test]
    fn buffers_are_reused_so_memory_stays_within_the_window() {
        let allocs = AtomicUsize::new(0);
        let read = |job: &u64, buf: &mut Vec<u8>| -> Result<()> {
            if buf.capacity() == 0 {
                allocs.fetch_add(1, Ordering::Relaxed);
                buf.reserve(4096);
            }
            fill(job, buf)
        };
        let threads = 2;
        read_in_order(threads, 0..10_000u64, &read, &mut |_, _| Ok(())).unwrap();
        assert!(allocs.load(Ordering::Relaxed) <= pipeline_depth(threads));
    }
}
