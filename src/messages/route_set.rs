//! The routes the hub runs: each configured route with the wake of its worker and the worker's
//! number, swapped whole when a reload changes `[[routes]]`.
//!
//! A route is known by its name. A reload that keeps a name keeps its worker and wake, and the
//! worker takes the new settings (URL, key, mode, match, ages) at its next claim; attempts in
//! flight finish with the settings they started with. A route removed loses its worker; its
//! stored deliveries stay, pending ones waiting for a route of that name to come back and dead
//! ones until their purge time. A route added, or added again, gets a new worker with a new
//! number, so a worker of an earlier incarnation that has not yet seen the removal ends rather
//! than running beside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Notify;

use super::Inbound;
use crate::config::RouteSettings;

/// One running route.
#[derive(Debug)]
pub(super) struct RunningRoute {
    pub(super) settings: RouteSettings,
    /// Wakes its worker: a push taken for it, an admin's retry, a slot freed.
    pub(super) wake: Arc<Notify>,
    /// The worker serving it; a worker whose number is no longer the route's ends.
    pub(super) worker: u64,
}

/// The running routes, in configuration order (the first matching reply route replies).
#[derive(Debug, Default)]
pub(super) struct RouteSet {
    routes: Vec<Arc<RunningRoute>>,
}

/// What a reload changed in `[[routes]]`, by name: part of its answer.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RouteChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Kept with new settings.
    pub changed: Vec<String>,
}

impl RouteChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl RouteSet {
    /// The set of `settings`, each route with a new worker number from `numbers`.
    pub(super) fn new(settings: Vec<RouteSettings>, numbers: &AtomicU64) -> RouteSet {
        let routes = settings
            .into_iter()
            .map(|settings| {
                Arc::new(RunningRoute {
                    settings,
                    wake: Arc::new(Notify::new()),
                    worker: numbers.fetch_add(1, Ordering::Relaxed),
                })
            })
            .collect();
        RouteSet { routes }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Arc<RunningRoute>> {
        self.routes.iter().find(|r| r.settings.name == name)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<RunningRoute>> {
        self.routes.iter()
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| r.settings.name.clone())
            .collect()
    }

    /// The routes `push` goes to, in configuration order.
    pub(super) fn matching(&self, push: &Inbound) -> Vec<Arc<RunningRoute>> {
        self.routes
            .iter()
            .filter(|r| super::routing::matches(&r.settings.matches, push))
            .cloned()
            .collect()
    }

    /// The set `new` makes of this one: kept names keep their worker and wake, new names get
    /// a new worker number. With what changed.
    pub(super) fn reconciled(
        &self,
        new: Vec<RouteSettings>,
        numbers: &AtomicU64,
    ) -> (RouteSet, RouteChanges) {
        let mut changes = RouteChanges::default();
        let mut routes = Vec::with_capacity(new.len());
        for settings in new {
            let route = match self.get(&settings.name) {
                Some(old) => {
                    if !old.settings.same_as(&settings) {
                        changes.changed.push(settings.name.clone());
                    }
                    RunningRoute {
                        settings,
                        wake: old.wake.clone(),
                        worker: old.worker,
                    }
                }
                None => {
                    changes.added.push(settings.name.clone());
                    RunningRoute {
                        settings,
                        wake: Arc::new(Notify::new()),
                        worker: numbers.fetch_add(1, Ordering::Relaxed),
                    }
                }
            };
            routes.push(Arc::new(route));
        }
        let set = RouteSet { routes };
        changes.removed = self
            .routes
            .iter()
            .filter(|r| set.get(&r.settings.name).is_none())
            .map(|r| r.settings.name.clone())
            .collect();
        (set, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, url: &str) -> RouteSettings {
        RouteSettings {
            url: url.into(),
            ..RouteSettings::sample(name)
        }
    }

    #[test]
    fn a_reload_keeps_the_workers_of_kept_names_and_numbers_new_ones_afresh() {
        let numbers = AtomicU64::new(0);
        let set = RouteSet::new(
            vec![route("a", "http://a/"), route("b", "http://b/")],
            &numbers,
        );
        let (a, b) = (set.get("a").unwrap().clone(), set.get("b").unwrap().clone());
        assert_ne!(a.worker, b.worker);

        let (next, changes) = set.reconciled(
            vec![
                route("c", "http://c/"),
                route("a", "http://a/"),
                route("b", "http://b2/"),
            ],
            &numbers,
        );
        assert_eq!(
            changes,
            RouteChanges {
                added: vec!["c".into()],
                removed: vec![],
                changed: vec!["b".into()],
            }
        );
        assert_eq!(next.names(), ["c", "a", "b"], "the file's order");
        let (a2, b2) = (next.get("a").unwrap(), next.get("b").unwrap());
        assert_eq!((a2.worker, b2.worker), (a.worker, b.worker));
        assert!(Arc::ptr_eq(&a2.wake, &a.wake));
        assert_eq!(b2.settings.url, "http://b2/");
        let c = next.get("c").unwrap().worker;
        assert!(c != a.worker && c != b.worker);

        // b removed, then added again: a new worker, so b's old one ends.
        let (without_b, changes) = next.reconciled(vec![route("a", "http://a/")], &numbers);
        assert_eq!(changes.removed, ["c", "b"]);
        let (again, changes) = without_b.reconciled(
            vec![route("a", "http://a/"), route("b", "http://b2/")],
            &numbers,
        );
        assert_eq!(changes.added, ["b"]);
        assert_ne!(again.get("b").unwrap().worker, b.worker);
        assert!(without_b
            .reconciled(vec![route("a", "http://a/")], &numbers)
            .1
            .is_empty());
    }
}
