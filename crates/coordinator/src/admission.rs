//! Admission: lease renewals never queue behind other work. Every call but a renewal
//! (`DataNodes/Heartbeat`, `DataNodes/KeepAlive`) shares one budget of calls in flight
//! across all connections, and a call that finds the budget spent is shed at once with
//! `UNAVAILABLE` (reason `OVERLOADED`; a retry with backoff may succeed) instead of waiting
//! in a queue. A flood of reads, DDL or registrations can then hold at most the budget's
//! worth of work in the coordinator, and a renewal waits behind no more than that; an
//! expired lease under overload (etcd #18069) would fence healthy data nodes.
//!
//! A streaming call holds its slot only until its answer's headers are sent, so the
//! long-lived streams (KeepAlive, WatchLeader, watches) never use the budget up.

use std::sync::Arc;
use std::task::{Context, Poll};

use leasehold::status::{error_status, reason};
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::codegen::http::{Request, Response};
use tower::limit::concurrency::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::metrics;

/// The calls that renew data-node leases: never counted, never shed.
const RENEWALS: [&str; 2] = ["/leasehold.v1.DataNodes/Heartbeat", "/leasehold.v1.DataNodes/KeepAlive"];

/// Wraps a server's routes with the shared budget (one layer per server; every connection's
/// copy draws on the same budget).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
}

impl AdmissionLayer {
    /// A budget of `max_in_flight` calls at once, renewals not counted.
    pub fn new(max_in_flight: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_in_flight)) }
    }

    /// How many more calls the budget admits right now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }
}

impl<S: Clone> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, routes: S) -> Admission<S> {
        Admission {
            renewals: routes.clone(),
            others: LoadShed::new(ConcurrencyLimit::with_semaphore(routes, self.slots.clone())),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    renewals: S,
    others: LoadShed<ConcurrencyLimit<S>>,
}

impl<S, B> Service<Request<B>> for Admission<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Response<Body>, BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.renewals.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if RENEWALS.contains(&request.uri().path()) {
            let answer = self.renewals.call(request);
            return Box::pin(async move { answer.await.map_err(Into::into) });
        }
        // The shedding service answers at once: ready while the budget has a slot, else the
        // call is refused rather than queued.
        let others = self.others.clone();
        Box::pin(async move {
            match others.oneshot(request).await {
                Err(error) if error.is::<Overloaded>() => {
                    metrics::call_shed();
                    Ok(overloaded().into_http())
                }
                answered => answered,
            }
        })
    }
}

/// The answer to a shed call.
fn overloaded() -> tonic::Status {
    error_status(
        Code::Unavailable,
        reason::OVERLOADED,
        "the coordinator is at its limit of calls in flight; retry with backoff",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::{Notify, oneshot};

    /// Routes whose first call signals `entered` and answers once `release` fires, so that
    /// it stays in flight as long as the test needs; later calls answer at once.
    #[derive(Clone)]
    struct Held {
        entered: Arc<Notify>,
        release: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
    }

    impl Service<Request<()>> for Held {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Response<Body>, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let release = self.release.lock().unwrap().take();
            let entered = self.entered.clone();
            Box::pin(async move {
                if let Some(release) = release {
                    entered.notify_one();
                    let _ = release.await;
                }
                Ok(Response::new(Body::empty()))
            })
        }
    }

    fn request(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    fn grpc_code(response: &Response<Body>) -> Option<String> {
        response.headers().get("grpc-status").map(|value| value.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_call_beyond_the_budget_is_shed_while_renewals_pass() {
        let (release, held) = oneshot::channel();
        let routes = Held { entered: Arc::new(Notify::new()), release: Arc::new(std::sync::Mutex::new(Some(held))) };
        let layer = AdmissionLayer::new(1);
        // Two connections' copies share the budget.
        let (mut first, mut second) = (layer.layer(routes.clone()), layer.layer(routes.clone()));
        let in_flight = tokio::spawn(first.call(request("/leasehold.v1.Catalog/GetTable")));
        routes.entered.notified().await;
        assert_eq!(layer.free_slots(), 0, "the call in flight holds the only slot");
        let shed = second.call(request("/leasehold.v1.Catalog/ListTables")).await.unwrap();
        assert_eq!(grpc_code(&shed).as_deref(), Some("14"), "UNAVAILABLE");
        let renewal = second.call(request("/leasehold.v1.DataNodes/Heartbeat")).await.unwrap();
        assert_eq!(grpc_code(&renewal), None, "a renewal is not counted against the budget");
        release.send(()).unwrap();
        let answered = in_flight.await.unwrap().unwrap();
        assert_eq!(grpc_code(&answered), None);
        assert_eq!(layer.free_slots(), 1, "the slot is given back when the call is answered");
        let after = second.call(request("/leasehold.v1.Catalog/ListTables")).await.unwrap();
        assert_eq!(grpc_code(&after), None);
    }
}
