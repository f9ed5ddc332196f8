"Launched by tests/test_distributed.py under torchrun: train the core's stand-in model."
import sys
from muomni.core import load_config, train_demo

save_dir, steps = sys.argv[1], int(sys.argv[2])
cfg = load_config(dict(kind="demo", save_dir=save_dir, dropout=0.0, lr=1e-2, warmup_steps=2, max_steps=steps,
                       val_freq=5, print_freq=5, checkpoint_freq=5, batch_size=32, device="cpu"))
train_demo(cfg)
