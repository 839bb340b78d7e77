//! [`Pair`]: the calling thread plus one helper thread that spins between jobs, for the
//! fork–join points of the CPU engine's step (the two half-batches, then the two halves of
//! the update), which come about every half millisecond.
//!
//! Why not a rayon pool: an idle rayon worker sleeps on a futex after a few dozen
//! microseconds, and waking it costs 20–100 µs on a virtual machine (measured: the second
//! half-batch of a 1 ms step started 80–95 µs after the first). The helper here spins for
//! [`SPIN`] after each job, so that a job posted within that time starts within a
//! microsecond; only then does it park. The caller runs its own half meanwhile, so a fork
//! costs one store and one load.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the helper spins for the next job before it parks (a training step is about a
/// millisecond, so a helper that trains never parks; one left idle stops using its core
/// after this).
const SPIN: Duration = Duration::from_millis(2);

const IDLE: u8 = 0;
const POSTED: u8 = 1;
const DONE: u8 = 2;
const EXIT: u8 = 3;

/// The caller's job, borrowed for the duration of one [`Pair::join`]; its lifetime is erased
/// so that it can cross to the helper thread (see the safety argument in `join`).
type Job = *mut (dyn FnMut() + Send + 'static);

struct Shared {
    /// `IDLE → POSTED` (caller) `→ DONE` (helper) `→ IDLE` (caller), or `EXIT`.
    state: AtomicU8,
    /// Set by the helper while it parks (or is about to), so that the caller unparks it.
    parked: AtomicBool,
    /// Written by the caller before `POSTED` is stored, read by the helper after it loads it.
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is written only by the caller while the state is IDLE and read only by the
// helper after it saw POSTED (release/acquire on `state` orders the two); the pointee is
// `Send`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// The calling thread and one spinning helper thread (see the [module docs](self)).
pub(crate) struct Pair {
    shared: Arc<Shared>,
    /// Held by the one [`Pair::join`] in progress; a second, concurrent `join` runs both
    /// closures on its own thread instead.
    busy: AtomicBool,
    helper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("helper", &self.helper.as_ref().map(|h| h.thread().id()))
            .finish()
    }
}

impl Pair {
    /// Starts the helper thread; `None` if the system refuses a thread (the caller then
    /// runs both halves itself: the same results, more slowly).
    pub(crate) fn new() -> Option<Self> {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            parked: AtomicBool::new(false),
            job: UnsafeCell::new(None),
        });
        let theirs = Arc::clone(&shared);
        let helper = thread::Builder::new()
            .name("tsm-cpu-engine".into())
            .spawn(move || helper_loop(&theirs))
            .ok()?;
        Some(Self {
            shared,
            busy: AtomicBool::new(false),
            helper: Some(helper),
        })
    }

    /// Runs `a` on the calling thread and `b` on the helper, and returns both results; a
    /// panic in either is resumed on the caller once both have finished.
    pub(crate) fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA,
        B: FnOnce() -> RB + Send,
        RB: Send,
    {
        if self.busy.swap(true, Ordering::Acquire) {
            return (a(), b());
        }
        let mut b = Some(b);
        let mut out: Option<thread::Result<RB>> = None;
        let mut call = || {
            let b = b.take().expect("a job runs once");
            out = Some(panic::catch_unwind(AssertUnwindSafe(b)));
        };
        let job: &mut (dyn FnMut() + Send) = &mut call;
        // SAFETY: only the lifetime is erased. The helper calls the job and then stores DONE;
        // this function does not return (nor unwind: `a` runs under `catch_unwind`) before
        // it has loaded DONE, so `call` and what it borrows outlive every use of the pointer.
        let job: Job = unsafe { std::mem::transmute::<&mut (dyn FnMut() + Send), Job>(job) };
        // SAFETY: the state is IDLE (we hold `busy`), so the helper does not read `job` now.
        unsafe { *self.shared.job.get() = Some(job) };
        self.shared.state.store(POSTED, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            if let Some(h) = &self.helper {
                h.thread().unpark();
            }
        }
        let ra = panic::catch_unwind(AssertUnwindSafe(a));
        let mut spins = 0u32;
        while self.shared.state.load(Ordering::Acquire) != DONE {
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.shared.state.store(IDLE, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        let rb = out.take().expect("the helper ran the job");
        match (ra, rb) {
            (Ok(ra), Ok(rb)) => (ra, rb),
            (Err(p), _) | (_, Err(p)) => panic::resume_unwind(p),
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.shared.state.store(EXIT, Ordering::SeqCst);
        if let Some(h) = self.helper.take() {
            h.thread().unpark();
            // The helper only runs jobs that panic inside `catch_unwind`, so it ends cleanly.
            let _ = h.join();
        }
    }
}

/// Waits for POSTED (spinning for up to [`SPIN`], then parked), runs the job, stores DONE.
fn helper_loop(shared: &Shared) {
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        loop {
            match shared.state.load(Ordering::Acquire) {
                POSTED => break,
                EXIT => return,
                _ => {}
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 != 0 || since.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            // Park, unless a job or exit arrived after we announced it: the caller stores
            // the state before it loads `parked`, we store `parked` before we load the
            // state (all SeqCst), so one of us sees the other and no wake-up is lost.
            shared.parked.store(true, Ordering::SeqCst);
            if shared.state.load(Ordering::SeqCst) == IDLE {
                thread::park();
            }
            shared.parked.store(false, Ordering::SeqCst);
            since = Instant::now();
        }
        // SAFETY: POSTED was loaded with acquire after the caller wrote the job; the caller
        // waits for DONE before the job's borrow ends (see `Pair::join`).
        let job = unsafe { (*shared.job.get()).take() };
        if let Some(job) = job {
            // SAFETY: as above: the pointee is alive and only this thread uses it now.
            unsafe { (*job)() };
        }
        shared.state.store(DONE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_run_and_return_their_results() {
        let pair = Pair::new().expect("a thread");
        let data: Vec<u64> = (1..=1000).collect();
        for round in 0..2000u64 {
            let (lo, hi) = data.split_at(500);
            let (a, b) = pair.join(
                || lo.iter().sum::<u64>() + round,
                || hi.iter().sum::<u64>() * 2,
            );
            assert_eq!(a, 125_250 + round);
            assert_eq!(b, 2 * 375_250);
        }
    }

    #[test]
    fn a_helper_that_parked_wakes_for_the_next_job() {
        let pair = Pair::new().expect("a thread");
        thread::sleep(SPIN * 3);
        let (a, b) = pair.join(|| 1, || thread::current().name().map(str::to_owned));
        assert_eq!((a, b.as_deref()), (1, Some("tsm-cpu-engine")));
    }

    #[test]
    fn a_panic_on_either_side_reaches_the_caller_and_the_pair_still_works() {
        let pair = Pair::new().expect("a thread");
        let helper = panic::catch_unwind(AssertUnwindSafe(|| pair.join(|| 1, || panic!("b"))));
        assert!(helper.is_err());
        let caller = panic::catch_unwind(AssertUnwindSafe(|| pair.join(|| panic!("a"), || 2)));
        assert!(caller.is_err());
        assert_eq!(pair.join(|| 3, || 4), (3, 4));
    }

    #[test]
    fn concurrent_joins_on_one_pair_each_get_their_results() {
        let pair = Pair::new().expect("a thread");
        thread::scope(|s| {
            for k in 0..4u64 {
                let pair = &pair;
                s.spawn(move || {
                    for i in 0..500 {
                        assert_eq!(pair.join(|| i + k, || i * k), (i + k, i * k));
                    }
                });
            }
        });
    }
}
