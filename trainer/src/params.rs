//! The model's parameters and buffers: named, runtime-shaped, flat tensors.
//!
//! dfdx 0.13's module system needs compile-time shapes for parameters; the models here keep
//! their tensors in this list instead, so layer sizes (the projector's, the architecture) are
//! runtime values. The optimizer ([`crate::lars`]) and the checkpoints ([`crate::checkpoint`])
//! work on this list directly; gradients are read from dfdx's `Gradients` by tensor.

use dfdx::prelude::*;

use crate::nn::Flat;

/// What the optimizer does with a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A conv or linear weight (>1-D): weight decay and LARS adaptation.
    Weight,
    /// A bias or BatchNorm gamma/beta (1-D): neither (the official `exclude_bias_and_norm`).
    Bias,
    /// Not trained (BatchNorm running statistics).
    Buffer,
}

/// One named tensor, stored flat; `shape` is its logical (PyTorch) shape.
#[derive(Debug, Clone)]
pub struct Param<D: Storage<f32>> {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: Kind,
    pub t: Flat<D>,
}

impl<D: Storage<f32>> Param<D> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All tensors of a model, in a fixed order.
#[derive(Debug, Clone)]
pub struct Store<D: Storage<f32>> {
    pub params: Vec<Param<D>>,
}

impl<D: Device<f32>> Store<D> {
    pub fn new() -> Self {
        Store { params: Vec::new() }
    }

    /// Adds a tensor with initial values `data`; returns its index.
    pub fn add(
        &mut self,
        dev: &D,
        name: impl Into<String>,
        shape: Vec<usize>,
        kind: Kind,
        data: Vec<f32>,
    ) -> usize {
        let n: usize = shape.iter().product();
        assert_eq!(data.len(), n, "initial data size");
        let t = dev.tensor_from_vec(data, (n,));
        self.params.push(Param {
            name: name.into(),
            shape,
            kind,
            t,
        });
        self.params.len() - 1
    }

    pub fn get(&self, i: usize) -> &Flat<D> {
        &self.params[i].t
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Two distinct entries mutably (running mean and variance).
    pub fn pair_mut(&mut self, i: usize, j: usize) -> (&mut Flat<D>, &mut Flat<D>) {
        assert!(i < j, "pair_mut wants i < j");
        let (lo, hi) = self.params.split_at_mut(j);
        (&mut lo[i].t, &mut hi[0].t)
    }

    /// Trainable entries (weights and biases).
    pub fn trainable(&self) -> impl Iterator<Item = (usize, &Param<D>)> {
        self.params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind != Kind::Buffer)
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.trainable().map(|(_, p)| p.len()).sum()
    }

    /// Replaces entry `i`'s values (same size).
    pub fn set(&mut self, i: usize, data: Vec<f32>) -> anyhow::Result<()> {
        let p = &mut self.params[i];
        anyhow::ensure!(
            data.len() == p.len(),
            "{}: {} values, expected {}",
            p.name,
            data.len(),
            p.len()
        );
        let dev = p.t.device().clone();
        p.t = dev.tensor_from_vec(data, (p.len(),));
        Ok(())
    }
}

impl<D: Device<f32>> Default for Store<D> {
    fn default() -> Self {
        Self::new()
    }
}
