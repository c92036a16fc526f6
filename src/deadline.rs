//! A child process's deadline: [`Watchdog`] kills it (by its PID) if it still runs when the
//! time is up. The ssh runner and the monitor's alert command use it.
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Kills a child (by PID) if it is still running when the deadline passes.
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    pub fn start(child: &Child, timeout: Duration) -> Watchdog {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let (d, f, pid) = (done.clone(), fired.clone(), child.id());
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*d;
            let g = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (g, _) = cv
                .wait_timeout_while(g, timeout, |finished| !*finished)
                .unwrap_or_else(|e| e.into_inner());
            if !*g {
                f.store(true, Ordering::SeqCst);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        Watchdog {
            done,
            fired,
            thread,
        }
    }

    /// Call after the child was waited for; true if the deadline killed it.
    pub fn stop(self) -> bool {
        {
            let (lock, cv) = &*self.done;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}
