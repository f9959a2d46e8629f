//! The agent state the daemon's tasks share, passed to every task in its [`super::Env`]: what the
//! goal-state task took in last (the goal state, the container identity), the hand-off of a new
//! extensions goal state to the extensions task, what that task last finished and whether the
//! status has taken it in, and the worker threads, so one task can wake another. Each part is behind its own short lock, held only to
//! read or replace a value (never across a request or a command), so no task waits for another's
//! work and no result depends on the order the tasks run in.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

use crate::documents::extensions::ExtensionsGoalState;
use crate::documents::wire::GoalState;
use crate::extensions::lifecycle::Extensions;
use crate::platform::hostgaplugin::ContainerIdentity;

/// An extensions goal state for the extensions task to bring the handlers to.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub goal_state: ExtensionsGoalState,
    /// The container that goal state belongs to (artifact downloads name it).
    pub who: ContainerIdentity,
}

/// The extensions goal state the extensions task last finished, and its handling state then
/// (failures to report), for the status document.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The hand-off it answers ([`State::take_extensions`]).
    pub number: u64,
    pub goal_state: ExtensionsGoalState,
    pub extensions: Extensions,
}

#[derive(Debug, Default)]
struct ExtensionsSlot {
    pending: Option<Handoff>,
    /// Hand-offs made, and the number of the last one the extensions task finished.
    handed_off: u64,
    done: u64,
    /// The last hand-off whose result the status reporter has taken in.
    reported: u64,
    processed: Option<Processed>,
    /// No more hand-offs are taken ([`State::drain`]).
    draining: bool,
}

/// Shared agent state (see the module comment).
#[derive(Debug, Default)]
pub struct State {
    goal_state: Mutex<Option<GoalState>>,
    identity: Mutex<Option<ContainerIdentity>>,
    extensions: Mutex<ExtensionsSlot>,
    workers: Mutex<Vec<(&'static str, Thread)>>,
    kicked: Mutex<Vec<&'static str>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// The goal state last taken in (the remote-access task reads it).
    pub fn goal_state(&self) -> Option<GoalState> {
        lock(&self.goal_state).clone()
    }

    /// `f` of the goal state last taken in, without a copy of it (a task that only looks
    /// whether it changed, every period).
    pub fn with_goal_state<R>(&self, f: impl FnOnce(Option<&GoalState>) -> R) -> R {
        f(lock(&self.goal_state).as_ref())
    }

    /// The container identity of the goal state last taken in (telemetry, log upload).
    pub fn identity(&self) -> Option<ContainerIdentity> {
        lock(&self.identity).clone()
    }

    /// A new goal state was taken in.
    pub fn set_goal_state(&self, goal_state: GoalState) {
        *lock(&self.identity) = Some(ContainerIdentity::of(&goal_state));
        *lock(&self.goal_state) = Some(goal_state);
    }

    /// Give the extensions task a new extensions goal state (replacing one it has not started
    /// on) and wake it.
    pub fn hand_off_extensions(&self, handoff: Handoff) {
        {
            let mut slot = lock(&self.extensions);
            if slot.draining {
                return;
            }
            slot.pending = Some(handoff);
            slot.handed_off += 1;
        }
        self.kick(super::extensions_task::NAME);
    }

    /// The newest hand-off not yet taken, with its number for [`State::extensions_done`].
    pub fn take_extensions(&self) -> Option<(u64, Handoff)> {
        let mut slot = lock(&self.extensions);
        let number = slot.handed_off;
        slot.pending.take().map(|h| (number, h))
    }

    /// The extensions task finished a hand-off (`processed.number`); the goal-state task is
    /// woken to report it.
    pub fn extensions_done(&self, processed: Processed) {
        {
            let mut slot = lock(&self.extensions);
            slot.done = slot.done.max(processed.number);
            slot.processed = Some(processed);
        }
        self.kick(super::goal_state_task::NAME);
    }

    /// The status reporter has taken in the results up to hand-off `number` (`u64::MAX`: every
    /// result there is, e.g. when there is nowhere to report them).
    pub fn extensions_reported(&self, number: u64) {
        let mut slot = lock(&self.extensions);
        slot.reported = slot.reported.max(number.min(slot.done));
    }

    /// Whether a handed-off extensions goal state is waiting or being processed.
    pub fn extensions_busy(&self) -> bool {
        let slot = lock(&self.extensions);
        slot.done < slot.handed_off
    }

    /// Look at what the extensions task last finished (the lock is held while `f` runs: keep it
    /// short; the extensions task takes it only to publish a result).
    pub fn with_processed<R>(&self, f: impl FnOnce(Option<&Processed>) -> R) -> R {
        f(lock(&self.extensions).processed.as_ref())
    }

    /// Take no more hand-offs: a daemon run with a wake-up limit that reached it lets the work
    /// already handed off finish and be reported, and waits for nothing new (a platform that
    /// brings a new goal state with every poll would always have some).
    pub fn drain(&self) {
        lock(&self.extensions).draining = true;
    }

    /// Whether work handed from one task to another is still outstanding: an extensions goal
    /// state not yet processed, or its result not yet taken in by the status reporter (a daemon
    /// run with a wake-up limit lets both happen before it stops).
    pub fn outstanding(&self) -> bool {
        let slot = lock(&self.extensions);
        slot.done < slot.handed_off || slot.reported < slot.done
    }

    /// A worker thread runs the task `name` (the scheduler registers every task with its worker).
    pub fn register_worker(&self, name: &'static str, thread: Thread) {
        lock(&self.workers).push((name, thread));
    }

    /// Run the task `name` as soon as its worker is free, whatever its period.
    pub fn kick(&self, name: &'static str) {
        let mut kicked = lock(&self.kicked);
        if !kicked.contains(&name) {
            kicked.push(name);
        }
        drop(kicked);
        if let Some((_, t)) = lock(&self.workers).iter().find(|(n, _)| *n == name) {
            t.unpark();
        }
    }

    /// Whether `name` was kicked since the last call (clears it).
    pub fn take_kick(&self, name: &'static str) -> bool {
        let mut kicked = lock(&self.kicked);
        let before = kicked.len();
        kicked.retain(|n| *n != name);
        kicked.len() < before
    }

    /// Wake every registered worker (the daemon stops).
    pub fn unpark_all(&self) {
        for (_, t) in lock(&self.workers).iter() {
            t.unpark();
        }
    }
}
