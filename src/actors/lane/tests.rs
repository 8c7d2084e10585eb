//! The lanes' bookkeeping, against a stand-in tenant actor that keeps the messages it gets so
//! a test finishes them (drops them) when and in the order it chooses.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Fairness, Lane, RUNNING_SHARE_MIN};
use crate::actors::messages::{Ack, Deliver, Op, RuntimeError};
use crate::actors::tests::{ctx, msg, web};
use crate::tenancy::TeamId;

/// Keeps every message it gets, in arrival order.
struct Keeper(Arc<Mutex<Vec<Deliver>>>);

impl Actor for Keeper {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Keeper {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) {
        self.0.lock().unwrap().push(msg);
    }
}

/// What a tenant sent: its lane, the messages its actor holds (running), and the answers.
struct Tenant {
    lane: Arc<Lane>,
    kept: Arc<Mutex<Vec<Deliver>>>,
    keeper: Addr<Keeper>,
}

impl Tenant {
    fn new(fairness: &Arc<Fairness>) -> Tenant {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keeper = Keeper::create(|ctx| {
            ctx.set_mailbox_capacity(1024);
            Keeper(kept.clone())
        });
        Tenant {
            lane: Lane::new(fairness.clone(), keeper.clone().recipient()),
            kept,
            keeper,
        }
    }

    /// Submits message `text`; returns its answer's receiver.
    fn send(&self, text: &str) -> oneshot::Receiver<Result<Ack, RuntimeError>> {
        let (reply, answer) = oneshot::channel();
        let deliver = Deliver {
            op: Op::Message,
            ctx: ctx("acme", "prod"),
            team: TeamId::parse("support").unwrap(),
            channel: web(),
            inbound: msg(Some("s"), "ada", text),
            named: true,
            rerouted: false,
            reply,
            span: tracing::Span::none(),
            running: None,
        };
        self.lane.submit(deliver).unwrap();
        answer
    }

    /// Lets the actor's mailbox be handled, then takes the messages it holds, in order.
    async fn take_kept(&self) -> Vec<Deliver> {
        settle().await;
        std::mem::take(&mut *self.kept.lock().unwrap())
    }
}

/// Lets the actors handle what their mailboxes hold.
async fn settle() {
    for _ in 0..8 {
        actix_rt::task::yield_now().await;
    }
}

fn texts(kept: &[Deliver]) -> Vec<String> {
    kept.iter().map(|d| d.inbound.text.clone()).collect()
}

#[actix_rt::test]
async fn a_tenant_alone_runs_up_to_the_budget_and_the_rest_start_in_order_as_others_finish() {
    let fairness = Fairness::new(20, Arc::default());
    let waiting = || fairness.metrics.waiting.load(Ordering::Relaxed);
    let a = Tenant::new(&fairness);
    let _answers: Vec<_> = (0..25).map(|n| a.send(&format!("m{n}"))).collect();
    assert_eq!(a.lane.counts(), (20, 5));
    assert_eq!(waiting(), 5);
    let mut running = a.take_kept().await;
    assert_eq!(
        texts(&running),
        (0..20).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
    // Two finish (in any order): the next two start, in the order they were submitted.
    running.remove(7);
    running.remove(0);
    assert_eq!(a.lane.counts(), (20, 3));
    assert_eq!(waiting(), 3);
    let next = a.take_kept().await;
    assert_eq!(texts(&next), ["m20", "m21"]);
    // 18 finish: the last three waiting start, and 5 run.
    drop(running);
    assert_eq!(a.lane.counts(), (5, 0));
    assert_eq!(waiting(), 0);
    assert_eq!(texts(&a.take_kept().await), ["m22", "m23", "m24"]);
}

#[actix_rt::test]
async fn a_second_busy_tenant_runs_at_once_and_the_first_gets_half_the_budget() {
    let budget = 2 * RUNNING_SHARE_MIN + 8;
    let fairness = Fairness::new(budget, Arc::default());
    let (noisy, calm) = (Tenant::new(&fairness), Tenant::new(&fairness));
    let _burst: Vec<_> = (0..budget + 10)
        .map(|n| noisy.send(&format!("n{n}")))
        .collect();
    assert_eq!(noisy.lane.counts(), (budget, 10));
    // The calm tenant is not behind the burst: its message starts now.
    let _calm = calm.send("c0");
    assert_eq!(calm.lane.counts(), (1, 0));
    let calm_running = calm.take_kept().await;
    assert_eq!(texts(&calm_running), ["c0"]);
    // The noisy tenant's share is now half the budget: finishing some of its running messages
    // starts none of its waiting ones until it is under that share.
    let mut running = noisy.take_kept().await;
    running.truncate(budget / 2 + 1);
    assert_eq!(noisy.lane.counts(), (budget / 2 + 1, 10));
    running.pop();
    running.pop();
    assert_eq!(noisy.lane.counts(), (budget / 2, 9));
    assert_eq!(texts(&noisy.take_kept().await), [format!("n{budget}")]);
    drop(calm_running);
    assert_eq!(calm.lane.counts(), (0, 0));
}

#[actix_rt::test]
async fn no_share_is_below_the_minimum_however_many_tenants_are_busy() {
    let fairness = Fairness::new(RUNNING_SHARE_MIN * 2, Arc::default());
    let tenants: Vec<_> = (0..4).map(|_| Tenant::new(&fairness)).collect();
    // All four busy first, then each sends the rest of its 17.
    let _answers: Vec<_> = (0..RUNNING_SHARE_MIN + 1)
        .flat_map(|n| tenants.iter().map(move |t| t.send(&format!("m{n}"))))
        .collect();
    // Four busy tenants would each get 8 of 32: each still runs 16, and waits with the 17th.
    for t in &tenants {
        assert_eq!(t.lane.counts(), (RUNNING_SHARE_MIN, 1));
    }
}

#[actix_rt::test]
async fn waiting_messages_of_a_stopped_tenant_actor_are_answered_and_the_lane_empties() {
    let fairness = Fairness::new(RUNNING_SHARE_MIN, Arc::default());
    let a = Tenant::new(&fairness);
    let answers: Vec<_> = (0..RUNNING_SHARE_MIN + 3)
        .map(|n| a.send(&format!("m{n}")))
        .collect();
    let running = a.take_kept().await;
    assert_eq!(running.len(), RUNNING_SHARE_MIN);
    a.keeper.do_send(StopKeeper);
    settle().await;
    assert!(!a.keeper.connected());
    // The running ones finish unanswered (dropped); the waiting ones cannot start any more.
    drop(running);
    assert_eq!(a.lane.counts(), (0, 0));
    assert_eq!(fairness.busy.load(Ordering::Acquire), 0);
    let waiting = fairness.metrics.waiting.load(Ordering::Relaxed);
    assert_eq!(waiting, 0, "answered messages still counted as waiting");
    for (n, answer) in answers.into_iter().enumerate() {
        let got = answer.await;
        if n < RUNNING_SHARE_MIN {
            assert!(got.is_err(), "m{n} was dropped unanswered");
        } else {
            assert!(
                matches!(got, Ok(Err(RuntimeError::ShuttingDown))),
                "m{n}: {got:?}"
            );
        }
    }
}

/// Stops the keeper.
#[derive(Message)]
#[rtype(result = "()")]
struct StopKeeper;

impl Handler<StopKeeper> for Keeper {
    type Result = ();

    fn handle(&mut self, _msg: StopKeeper, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
