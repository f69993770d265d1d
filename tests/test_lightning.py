"""zp_ref's torch samplers inside a PyTorch Lightning Trainer (docs/torch.md, "PyTorch
Lightning"): a LightningModule whose sampler refreshes Q from the module's own Q head
once per epoch, and a 2-process DDP run (gloo, CPU) whose shards interleave into the
single-process draw."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("pytorch_lightning")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from zp_ref.torch_bridge import HybridBatchSampler, ImportanceWeightedSampler  # noqa: E402

N, NUM_SAMPLES, BATCH, EPOCHS, SEED = 512, 128, 32, 3, 5
#: pytorch_lightning 2.6 with torch 2.13 warns about its own use of torch's pytree
pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)`")


class RationalModule(pl.LightningModule):
    """y = P(x) / Q(x) with a linear P and a small Q head; the sampler's ``q_fn`` is the
    Q head. Records, per epoch, the pool's Q at the epoch's start and the pool indices
    of every batch it trained on."""

    def __init__(self, kind="importance", set_epoch_hook=True, out_dir=None):
        super().__init__()
        torch.manual_seed(0)
        self.p_head = torch.nn.Linear(1, 1, dtype=torch.float64)
        self.q_net = torch.nn.Sequential(torch.nn.Linear(1, 8, dtype=torch.float64),
                                         torch.nn.Tanh(),
                                         torch.nn.Linear(8, 1, dtype=torch.float64))
        self.x = torch.linspace(-1.0, 1.0, N, dtype=torch.float64).unsqueeze(1)
        self.y = 1.0 / ((self.x - 0.3) * (self.x + 0.5) + 0.05)
        self.kind, self.set_epoch_hook, self.out_dir = kind, set_epoch_hook, out_dir
        self.q_fn_calls, self.q_at_start, self.seen = 0, [], []

    def q_head(self, x):
        self.q_fn_calls += 1
        return self.q_net(x) + 2.0

    def train_dataloader(self):
        # built here, after the process group exists: num_replicas/rank default to it
        dataset = TensorDataset(torch.arange(N))
        if self.kind == "importance":
            self.sampler = ImportanceWeightedSampler(num_samples=NUM_SAMPLES, x_pool=self.x,
                                                     q_fn=self.q_head, refresh_every=1,
                                                     seed=SEED)
            return DataLoader(dataset, sampler=self.sampler, batch_size=BATCH)
        self.sampler = HybridBatchSampler(batch_size=BATCH, num_batches=NUM_SAMPLES // BATCH,
                                          x_pool=self.x, q_fn=self.q_head, refresh_every=1,
                                          ratio=0.5, seed=SEED)
        return DataLoader(dataset, batch_sampler=self.sampler)

    def on_train_epoch_start(self):
        if self.set_epoch_hook and self.kind == "hybrid":
            # Lightning calls set_epoch on dataloader.sampler, not on a batch_sampler
            self.sampler.set_epoch(self.current_epoch)
        with torch.no_grad():
            self.q_at_start.append(self.q_net(self.x).numpy().ravel() + 2.0)
        self.seen.append([])

    def training_step(self, batch, batch_idx):
        (idx,) = batch
        self.seen[-1].append(idx.numpy().copy())
        x, y = self.x[idx], self.y[idx]
        return ((self.p_head(x) / self.q_head_train(x) - y) ** 2).mean()

    def q_head_train(self, x):
        return self.q_net(x) + 2.0            # the Q head in training (not counted)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def on_train_end(self):
        if self.out_dir is not None:          # DDP: each spawned rank leaves its record
            np.savez(f"{self.out_dir}/rank{self.global_rank}.npz",
                     q=np.array(self.q_at_start),
                     seen=np.array([np.concatenate(e) for e in self.seen]),
                     q_evaluations=self.sampler.q_evaluations,
                     num_replicas=self.sampler.num_replicas, rank=self.sampler.rank)


def fit(module, **kwargs):
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **kwargs)
    trainer.fit(module)
    return trainer


def single_process_draw(kind, q, epoch):
    """The epoch's draw of a one-process sampler built from the Q values ``q``."""
    if kind == "importance":
        s = ImportanceWeightedSampler(q, NUM_SAMPLES, refresh_every=1, seed=SEED, num_replicas=1)
        s.set_epoch(epoch)
        return s.indices()
    s = HybridBatchSampler(q, BATCH, NUM_SAMPLES // BATCH, refresh_every=1, ratio=0.5, seed=SEED,
                           num_replicas=1)
    s.set_epoch(epoch)
    return np.concatenate(list(s))


@pytest.mark.parametrize("kind", ["importance", "hybrid"])
def test_lightning_refreshes_q_once_per_epoch_and_draws_from_it(kind):
    """3 epochs: q_fn runs once at construction and once at epochs 1 and 2 (3 calls, one
    chunk each); every epoch trains on exactly the draw of a sampler given the Q head's
    values at that epoch's start, and those values changed (the model trained)."""
    module = RationalModule(kind)
    fit(module, devices=1)
    assert module.q_fn_calls == module.sampler.q_evaluations == EPOCHS
    assert module.sampler.epoch == EPOCHS - 1
    for epoch in range(EPOCHS):
        got = np.concatenate(module.seen[epoch])
        np.testing.assert_array_equal(got, single_process_draw(kind, module.q_at_start[epoch],
                                                               epoch))
    assert not np.array_equal(module.q_at_start[0], module.q_at_start[-1])


def test_lightning_does_not_call_set_epoch_on_a_batch_sampler():
    """Why the recipe's on_train_epoch_start hook: without it a batch sampler keeps
    epoch 0 (no refresh, the same batches every epoch)."""
    module = RationalModule("hybrid", set_epoch_hook=False)
    fit(module, devices=1)
    assert module.q_fn_calls == module.sampler.q_evaluations == 1
    assert module.sampler.epoch == 0
    for epoch in range(1, EPOCHS):
        np.testing.assert_array_equal(np.concatenate(module.seen[epoch]),
                                      np.concatenate(module.seen[0]))


@pytest.mark.slow
def test_lightning_ddp_shards_are_disjoint_and_interleave_into_the_single_process_draw(
        tmp_path):
    """strategy="ddp_spawn", 2 CPU processes (gloo), use_distributed_sampler=False: each
    rank's sampler takes num_replicas=2 and its rank from the process group; both ranks
    see the same Q each epoch (DDP keeps the parameters equal), rank r trains on
    positions r::2 of the global draw, and interleaving the two shards gives exactly the
    draw of one process built from that Q. Epoch 0's Q is the untrained module's."""
    fit(RationalModule("importance", out_dir=str(tmp_path)), devices=2, strategy="ddp_spawn",
        use_distributed_sampler=False)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert [(int(r["num_replicas"]), int(r["rank"])) for r in ranks] == [(2, 0), (2, 1)]
    assert [int(r["q_evaluations"]) for r in ranks] == [EPOCHS, EPOCHS]
    np.testing.assert_array_equal(ranks[0]["q"], ranks[1]["q"])
    fresh = RationalModule()
    with torch.no_grad():
        np.testing.assert_array_equal(ranks[0]["q"][0], fresh.q_net(fresh.x).numpy().ravel() + 2.0)
    for epoch in range(EPOCHS):
        shards = [r["seen"][epoch] for r in ranks]
        assert [s.size for s in shards] == [NUM_SAMPLES // 2] * 2
        union = np.empty(NUM_SAMPLES, dtype=np.int64)
        union[0::2], union[1::2] = shards
        np.testing.assert_array_equal(union, single_process_draw("importance",
                                                                 ranks[0]["q"][epoch], epoch))


def test_reloading_the_dataloader_every_epoch_evaluates_q_twice_per_later_epoch():
    """Why the recipe keeps reload_dataloaders_every_n_epochs=0: a sampler rebuilt each
    epoch evaluates q_fn at construction and again at set_epoch(e) for e > 0."""
    module = RationalModule("importance")
    fit(module, devices=1, reload_dataloaders_every_n_epochs=1)
    assert module.q_fn_calls == 1 + 2 * (EPOCHS - 1)
