//! Experiments 11 and 12: matrix preconditioners (Muon, Shampoo, SOAP) against Adam on the digits
//! MLP (THEORY.md §7): loss curves, and `κ` of a hidden layer's curvature block under each
//! optimizer's current preconditioner over training (see `matrix_common.rs` for the block).

use super::common::digits_split;
use super::matrix_common::{Method, Run, WIDTH, run};
use crate::error::CliError;
use crate::report::{Check, Ctx, Evidence, Experiment, Plot, Series, SeriesKind, Table};

/// Experiment 11: Muon and Shampoo against Adam.
pub struct MuonShampoo;
/// Experiment 12: SOAP against Shampoo and Adam.
pub struct Soap;

fn compare(
    id: &'static str,
    ctx: &Ctx,
    methods: &[Method],
) -> Result<(Vec<Run>, Evidence), CliError> {
    let (train, test) = digits_split(ctx, id)?;
    let epochs = 30;
    let checks_n = ctx.pick(6, 3);
    let runs = methods
        .iter()
        .map(|&m| run(id, ctx, m, &train, &test, epochs, checks_n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut loss = Plot::new(
        "Training loss per epoch (full training set)",
        "epoch",
        "training loss",
        false,
        true,
    );
    let mut kappa = Plot::new(
        format!(
            "κ of the hidden layer's {WIDTH}×{WIDTH} Gauss–Newton block, plain (dashed) and preconditioned (solid)"
        ),
        "epoch",
        "κ",
        false,
        true,
    );
    let mut table = Table::new(
        "At the end of training",
        &[
            "optimizer",
            "train loss",
            "test accuracy",
            "κ(G)",
            "κ(P½GP½)",
            "κ reduction",
        ],
    );
    for (i, r) in runs.iter().enumerate() {
        loss.series.push(Series::new(
            r.method.name(),
            SeriesKind::Line,
            i,
            r.epochs.clone(),
            r.train_loss.clone(),
        ));
        kappa.series.push(Series::new(
            format!("{}: κ(P½GP½)", r.method.name()),
            SeriesKind::Line,
            i,
            r.checkpoints.clone(),
            r.kappa_precond.clone(),
        ));
        kappa.series.push(Series::new(
            format!("{}: κ(G)", r.method.name()),
            SeriesKind::Dashed,
            i,
            r.checkpoints.clone(),
            r.kappa_plain.clone(),
        ));
        let (kp, kq) = (
            *r.kappa_plain.last().unwrap_or(&f64::NAN),
            *r.kappa_precond.last().unwrap_or(&f64::NAN),
        );
        table.row(vec![
            r.method.name().into(),
            (*r.train_loss.last().unwrap_or(&f64::NAN)).into(),
            r.test_accuracy.into(),
            kp.into(),
            kq.into(),
            (kp / kq).into(),
        ]);
    }
    let setup = format!(
        "The digits MLP 64-{WIDTH}-{WIDTH}-10 (tanh, softmax cross-entropy), trained {epochs} epochs with batch 64 from the same seeded initialization by each optimizer; matrix optimizers run on the weight matrices as parameter groups with their shapes, the rest by Adam/AdamW (lr 3e-3, no weight decay). At {checks_n} checkpoints, the Gauss–Newton block G of the hidden-to-hidden weight (the positive semidefinite part of its Hessian block, exact, on 256 training samples) and κ(P½GP½) under the optimizer's current preconditioner of that block: Adam's diagonal, Muon's Newton–Schulz factor (BBᵀ)^(-1/2) ⊗ I of its momentum, Shampoo's L̃ ⊗ R̃ (precond-linalg's Kronecker κ, without forming P), SOAP's eigenbasis-diagonal P."
    );
    Ok((
        runs,
        Evidence {
            setup,
            tables: vec![table],
            plots: vec![loss, kappa],
            checks: Vec::new(),
        },
    ))
}

fn last(v: &[f64]) -> f64 {
    *v.last().unwrap_or(&f64::NAN)
}

/// `κ(G)/κ(P½GP½)` at the last checkpoint: how much the run's preconditioner improves the
/// conditioning of its own curvature block (each run is at its own parameters, so runs are
/// compared by this factor, not by raw κ).
fn reduction(r: &Run) -> f64 {
    last(&r.kappa_plain) / last(&r.kappa_precond)
}

/// The largest `κ(P½GP½)/κ(G)` over the checkpoints.
fn max_ratio(r: &Run) -> f64 {
    r.kappa_precond
        .iter()
        .zip(&r.kappa_plain)
        .map(|(a, b)| a / b)
        .fold(0.0, f64::max)
}

fn find(runs: &[Run], m: Method) -> &Run {
    runs.iter().find(|r| r.method == m).unwrap_or(&runs[0])
}

impl Experiment for MuonShampoo {
    fn id(&self) -> &'static str {
        "muon_shampoo"
    }
    fn number(&self) -> u32 {
        11
    }
    fn title(&self) -> &'static str {
        "Muon and Shampoo: Kronecker-structured preconditioners of a weight matrix"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §7 (Shampoo, Muon), §2 (preconditioning is a change of variables), Theorem 1"
    }
    fn claim(&self) -> &'static str {
        "Shampoo's L̃ ⊗ R̃ and Muon's (BBᵀ)^(-1/2) act on a layer's weight matrix as a whole; Shampoo's Kronecker factor lowers κ of the layer's curvature block at every checkpoint, by more than Adam's diagonal does, and both train the network at least about as well as Adam (final loss within 1.5×)."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let id = self.id();
        let (runs, mut ev) = compare(id, ctx, &[Method::Adam, Method::Muon, Method::Shampoo])?;
        let adam = find(&runs, Method::Adam);
        let sh = find(&runs, Method::Shampoo);
        let mu = find(&runs, Method::Muon);
        ev.checks.push(Check::le(
            "Shampoo: max over checkpoints of κ(P½GP½)/κ(G)",
            max_ratio(sh),
            1.0,
        ));
        ev.checks.push(Check::ge(
            "Shampoo's final κ reduction κ(G)/κ(P½GP½) relative to Adam's",
            reduction(sh) / reduction(adam),
            1.0,
        ));
        ev.checks.push(Check::le(
            "Shampoo's final training loss relative to Adam's",
            last(&sh.train_loss) / last(&adam.train_loss),
            1.5,
        ));
        ev.checks.push(Check::le(
            "Muon's final training loss relative to Adam's",
            last(&mu.train_loss) / last(&adam.train_loss),
            1.5,
        ));
        Ok(ev)
    }
}

impl Experiment for Soap {
    fn id(&self) -> &'static str {
        "soap"
    }
    fn number(&self) -> u32 {
        12
    }
    fn title(&self) -> &'static str {
        "SOAP: Adam in Shampoo's eigenbasis"
    }
    fn theory(&self) -> &'static str {
        "THEORY.md §7 (SOAP), §4 (a diagonal preconditioner in a rotated basis)"
    }
    fn claim(&self) -> &'static str {
        "SOAP runs Adam's diagonal preconditioner in the eigenbasis of Shampoo's factors: in that basis the curvature block is closer to diagonal, so SOAP's preconditioner lowers κ of the layer's curvature block at every checkpoint, by more than Adam's diagonal in the original basis and more than Shampoo's Kronecker root, and trains at least as well as Adam."
    }
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError> {
        let id = self.id();
        let (runs, mut ev) = compare(id, ctx, &[Method::Adam, Method::Shampoo, Method::Soap])?;
        let adam = find(&runs, Method::Adam);
        let so = find(&runs, Method::Soap);
        let sh = find(&runs, Method::Shampoo);
        ev.checks.push(Check::le(
            "SOAP: max over checkpoints of κ(P½GP½)/κ(G)",
            max_ratio(so),
            1.0,
        ));
        ev.checks.push(Check::ge(
            "SOAP's final κ reduction κ(G)/κ(P½GP½) relative to Adam's",
            reduction(so) / reduction(adam),
            1.0,
        ));
        ev.checks.push(Check::ge(
            "SOAP's final κ reduction relative to Shampoo's",
            reduction(so) / reduction(sh),
            1.0,
        ));
        // --quick trains on a third of the data (a third of the steps): SOAP's start (no update
        // at its first step, a first basis from one gradient) weighs more, so only the same
        // order as Adam is asked there
        ev.checks.push(Check::le(
            "SOAP's final training loss relative to Adam's",
            last(&so.train_loss) / last(&adam.train_loss),
            ctx.pick(1.0, 2.0),
        ));
        ev.setup.push_str(" With --quick (400 training samples), the training-loss bound of SOAP against Adam is 2 instead of 1: SOAP's first step only initializes its factors, and its first basis comes from a single gradient, which weighs more over fewer steps.");
        Ok(ev)
    }
}
