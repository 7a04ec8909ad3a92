"""How long the surviving worker of a two-process multi-worker run takes to stop when the other is lost.

    python benchmarks/lost_worker.py --mode=kill --victim=1     # SIGKILL: the process dies
    python benchmarks/lost_worker.py --mode=stop --victim=0     # SIGSTOP: it hangs (no RST)

Starts trainers/train_imagenet.py twice on 127.0.0.1 (irevnet_tiny on digits, TF_CONFIG with
two workers), waits for the first progress line and 3 s more, then sends the signal to worker
`--victim` and times how long the other takes to exit. SIGKILL stands for a crashed process
(the kernel closes its connections); SIGSTOP for a machine that hangs or drops off the
network (nothing is closed, so only timeouts can tell). Prints one line per repeat and the
survivor's last line (the error it ended with); logs stay in --work_dir.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--strategy=multi_worker", "--dataset=digits", "--config=irevnet_tiny",
        "--image_size=16", "--batch_size=16", "--base_learning_rate=0.8", "--eval_steps=2",
        "--summary_images=0", "--seed=3", "--train_steps=100000", "--steps_per_loop=5",
        "--checkpoint_every=20", "--eval_every=0"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def measure(mode, victim, work_dir, limit):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    logs = [os.path.join(work_dir, f"worker{index}.txt") for index in range(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                         "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "trainers", "train_imagenet.py"),
             f"--model_dir={os.path.join(work_dir, 'model')}", *ARGS],
            stdout=open(logs[index], "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT))
    try:
        start = time.time()
        while not re.search(r"step \d+/100000", open(logs[1 - victim]).read()):
            if time.time() - start > 600 or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"no training progress; see {work_dir}")
            time.sleep(0.5)
        time.sleep(3)
        processes[victim].send_signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        lost_at = time.time()
        survivor = processes[1 - victim]
        try:
            status = survivor.wait(timeout=limit)
            seconds = time.time() - lost_at
        except subprocess.TimeoutExpired:
            status, seconds = None, None
        lines = open(logs[1 - victim]).read().strip().splitlines()
        return status, seconds, lines[-1] if lines else ""
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["kill", "stop"], default="kill")
    parser.add_argument("--victim", type=int, choices=[0, 1], default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--limit", type=float, default=600, help="give up after (seconds)")
    parser.add_argument("--work_dir", default=None)
    options = parser.parse_args()
    for repeat in range(options.repeats):
        work_dir = options.work_dir or tempfile.mkdtemp(prefix="lost-worker-")
        work_dir = os.path.join(work_dir, str(repeat))
        os.makedirs(work_dir, exist_ok=True)
        status, seconds, last = measure(options.mode, options.victim, work_dir, options.limit)
        timing = f"{seconds:.1f} s" if seconds is not None else f"more than {options.limit} s"
        print(f"{options.mode} worker {options.victim}: worker {1 - options.victim} exited "
              f"with status {status} after {timing}")
        print(f"  its last line: {last}")


if __name__ == "__main__":
    main()
