"""Launched by tests/test_distributed.py under torchrun: train the core's stand-in model.
Arguments: save_dir steps [key=value ...] (config overrides, e.g. parallel=fsdp, max_time_s=2, lr_schedule=time).
With SLOW_RANK=r in the environment, rank r sleeps SLOW_S seconds a step (ranks whose clocks run apart); every rank
writes its own final weights to rank<r>.pt so the test can check that the ranks agree."""
import json, os, sys, time
import torch
from muomni.core import load_config, train_demo, demo_problem, Trainer, dist_info, is_sharded, full_state

save_dir, steps = sys.argv[1], int(sys.argv[2])
extra = {k: json.loads(v) if v[:1].isdigit() or v[:1] in "[{-" or v in ("true", "false") else v
         for k, v in (a.split("=", 1) for a in sys.argv[3:])}
until = extra.pop("until", None)
cfg = load_config({**dict(kind="demo", save_dir=save_dir, dropout=0.0, lr=1e-2, warmup_steps=2, max_steps=steps,
                          val_freq=5, print_freq=5, checkpoint_freq=5, batch_size=32, device="cpu"), **extra})
model, train, loss_fn, eval_fn = demo_problem(cfg)
slow = int(os.environ.get("SLOW_RANK", -1))
def timed_loss(m, b):
    if dist_info()[0] == slow: time.sleep(float(os.environ.get("SLOW_S", "0.02")))
    return loss_fn(m, b)
trainer = Trainer(model, cfg, train, timed_loss, eval_fn)
trainer.fit(until)
state = full_state(trainer.model)[0] if is_sharded(trainer.model) else trainer.raw_model.state_dict()
rank = dist_info()[0]
if not is_sharded(trainer.model) or rank == 0:
    torch.save(dict(model=state, step=trainer.step), f"{save_dir}/rank{rank}.pt")
