//! [`Pair`]: the calling thread plus one helper thread that spins between jobs, for the
//! fork–join points of the CPU engine's step (the two half-batches, then the two halves of
//! the update), which come about every half millisecond.
//!
//! Why not a rayon pool: an idle rayon worker sleeps on a futex after a few dozen
//! microseconds, and waking it costs 20–100 µs on a virtual machine (measured: the second
//! half-batch of a 1 ms step started 80–95 µs after the first). The helper here spins for
//! [`SPIN`] after each job, so that a job posted within that time starts within a
//! microsecond; only then does it park. The caller runs its own half meanwhile, so a fork
//! costs one store and one load, and then waits for the helper's result the same way: it
//! spins for [`SPIN_HOT`], then yields its core between checks until [`SPIN`], then parks.
//! A waiter that only spun took the core its partner needed on a loaded machine (measured:
//! steps 2–4× slower than with rayon while a compiler ran beside them); if the helper has
//! not even started its job when the caller is done, the caller takes the job back and runs
//! it, as `rayon::join` does.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long either thread spins before it parks: the helper waiting for the next job, the
/// caller waiting for the helper's result. The gaps inside a training step are a few tens of
/// microseconds, so a training run on a quiet machine never parks; on a loaded one, a
/// thread whose partner was descheduled gives its core back after this.
const SPIN: Duration = Duration::from_micros(200);

const IDLE: u8 = 0;
const POSTED: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;
const EXIT: u8 = 4;

/// The caller's job, borrowed for the duration of one [`Pair::join`]; its lifetime is erased
/// so that it can cross to the helper thread (see the safety argument in `join`).
type Job = *mut (dyn FnMut() + Send + 'static);

struct Shared {
    /// `IDLE → POSTED` (caller) `→ RUNNING → DONE` (helper) `→ IDLE` (caller); or
    /// `POSTED → IDLE` when the caller takes its job back; or `EXIT`.
    state: AtomicU8,
    /// Set by the helper while it parks (or is about to), so that the caller unparks it.
    parked: AtomicBool,
    /// Set by the caller while it parks waiting for DONE, so that the helper unparks it.
    caller_parked: AtomicBool,
    /// Written by the caller before it stores `POSTED`, read by the helper after it moved
    /// the state from `POSTED` to `RUNNING`.
    job: UnsafeCell<Option<Job>>,
    /// The caller of the job in progress (to unpark), written and read as `job`.
    caller: UnsafeCell<Option<thread::Thread>>,
}

// SAFETY: `job` and `caller` are written only by the caller while the state is IDLE (and it
// holds `busy`), and read only by the helper after its compare-and-swap from POSTED to
// RUNNING succeeded (SeqCst operations on `state` order the two); the pointee is `Send`.
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
            caller_parked: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            caller: UnsafeCell::new(None),
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
    /// panic in either is resumed on the caller once both have finished. If the helper has
    /// not started `b` when `a` is done (it was descheduled on a loaded machine), the caller
    /// takes `b` back and runs it itself, as `rayon::join` does, rather than wait.
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
        // SAFETY: only the lifetime is erased. The helper calls the job only after it moved
        // the state from POSTED to RUNNING, and then stores DONE; this function does not
        // return (nor unwind: `a` runs under `catch_unwind`) before it has either loaded DONE
        // or moved the state from POSTED back to IDLE itself, so `call` and what it borrows
        // outlive every use of the pointer.
        let job: Job = unsafe { std::mem::transmute::<&mut (dyn FnMut() + Send), Job>(job) };
        // SAFETY: the state is IDLE (we hold `busy`), so the helper does not read `job` or
        // `caller` now.
        unsafe {
            *self.shared.job.get() = Some(job);
            *self.shared.caller.get() = Some(thread::current());
        }
        self.shared.state.store(POSTED, Ordering::SeqCst);
        if self.shared.parked.load(Ordering::SeqCst) {
            if let Some(h) = &self.helper {
                h.thread().unpark();
            }
        }
        let ra = panic::catch_unwind(AssertUnwindSafe(a));
        let taken_back = self
            .shared
            .state
            .compare_exchange(POSTED, IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if taken_back {
            // SAFETY: the helper reads the job only after it moved the state from POSTED to
            // RUNNING, which can no longer happen; clear the pointer that is about to dangle.
            unsafe { *self.shared.job.get() = None };
            call();
        } else {
            let done = || self.shared.state.load(Ordering::SeqCst) == DONE;
            if !spin_until(done) {
                // Park until DONE; the helper stores DONE before it loads `caller_parked`, we
                // store `caller_parked` before we load the state, so no wake-up is lost.
                self.shared.caller_parked.store(true, Ordering::SeqCst);
                while !done() {
                    thread::park();
                }
                self.shared.caller_parked.store(false, Ordering::SeqCst);
            }
        }
        self.shared.state.store(IDLE, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        let rb = out.take().expect("the job ran");
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

/// How long a waiting thread spins without yielding before it starts yielding its core to
/// whatever else is runnable (for the rest of [`SPIN`]).
const SPIN_HOT: Duration = Duration::from_micros(20);

/// Waits until `ready()` for at most [`SPIN`], spinning for [`SPIN_HOT`] and then yielding
/// between checks (on a loaded machine the partner may be waiting for this core); whether it
/// became ready.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let since = Instant::now();
    let mut spins = 0u32;
    let mut hot = true;
    loop {
        if ready() {
            return true;
        }
        spins = spins.wrapping_add(1);
        if hot {
            if spins % 64 == 0 && since.elapsed() >= SPIN_HOT {
                hot = false;
            }
            std::hint::spin_loop();
        } else {
            if since.elapsed() >= SPIN {
                return false;
            }
            thread::yield_now();
        }
    }
}

/// Waits for POSTED (spinning for up to [`SPIN`], then parked), runs the job, stores DONE
/// and wakes the caller if it parked.
fn helper_loop(shared: &Shared) {
    loop {
        let ready = || matches!(shared.state.load(Ordering::SeqCst), POSTED | EXIT);
        if !spin_until(ready) {
            // Park, unless a job or exit arrived after we announced it: the caller stores
            // the state before it loads `parked`, we store `parked` before we load the
            // state (all SeqCst), so one of us sees the other and no wake-up is lost.
            shared.parked.store(true, Ordering::SeqCst);
            while !ready() {
                thread::park();
            }
            shared.parked.store(false, Ordering::SeqCst);
        }
        if shared.state.load(Ordering::SeqCst) == EXIT {
            return;
        }
        // Claim the job, unless the caller took it back first.
        if shared
            .state
            .compare_exchange(POSTED, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            continue;
        }
        // SAFETY: the claim read POSTED (SeqCst) after the caller wrote the job and its
        // thread; the caller now waits for DONE before the job's borrow ends (`Pair::join`).
        let (job, caller) = unsafe { ((*shared.job.get()).take(), (*shared.caller.get()).take()) };
        if let Some(job) = job {
            // SAFETY: as above: the pointee is alive and only this thread uses it now.
            unsafe { (*job)() };
        }
        shared.state.store(DONE, Ordering::SeqCst);
        if shared.caller_parked.load(Ordering::SeqCst) {
            if let Some(caller) = caller {
                caller.unpark();
            }
        }
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
        use std::sync::atomic::AtomicBool;
        let pair = Pair::new().expect("a thread");
        thread::sleep(SPIN * 3);
        // `a` waits (up to 10 s) for `b` to start, so that the caller does not take `b` back:
        // a lost wake-up would leave `b` to the caller and fail the name check.
        let started = AtomicBool::new(false);
        let (_, b) = pair.join(
            || {
                let since = Instant::now();
                while !started.load(Ordering::SeqCst) && since.elapsed() < Duration::from_secs(10) {
                    thread::yield_now();
                }
            },
            || {
                started.store(true, Ordering::SeqCst);
                thread::current().name().map(str::to_owned)
            },
        );
        assert_eq!(b.as_deref(), Some("tsm-cpu-engine"));
    }

    #[test]
    fn a_caller_that_parked_waiting_wakes_with_the_result() {
        let pair = Pair::new().expect("a thread");
        for _ in 0..3 {
            let (a, b) = pair.join(
                || 1,
                || {
                    thread::sleep(SPIN * 5);
                    2
                },
            );
            assert_eq!((a, b), (1, 2));
        }
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
