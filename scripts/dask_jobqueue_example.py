#!/usr/bin/env python3
"""Register a cohort on a SLURM or PBS cluster: dask-jobqueue starts the workers as batch jobs.

Why a script and not a ``knee-register`` option: every cluster differs (queues, accounts, modules,
memory units), so this is a starting point to copy and adapt. It runs the same ``run_pair`` tasks as
``knee-register batch --dask-scheduler`` (one ``register`` process per pair), so the results, the
resume rules and OUT/summary.csv + OUT/index.html are the same.

Run it on the login node (it holds the Dask scheduler; keep it alive with tmux/screen, or submit it
as a small job of its own). Inputs and --output-dir must be on a file system every node sees, and the
nodes must run the same Python environment (--prologue activates it).

Example (20 nodes of 32 cores; each node registers 16 pairs at a time):
    python scripts/dask_jobqueue_example.py cohort.csv --output-dir /scratch/$USER/cohort \\
        --system slurm --nodes 20 --cores-per-node 32 --memory-per-node 128GB --walltime 04:00:00 \\
        --queue compute --account myproject --prologue "source /home/$USER/knee/.venv/bin/activate"
    python scripts/dask_jobqueue_example.py cohort.csv --output-dir out --system pbs --print-job-script

TLS and other security settings come from the Dask configuration (jobqueue.<system>.* and
distributed.comm.tls.*), as for any Dask cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from MultimodalKneeRegistrationLib.batch import BatchPolicy, DaskExecutor, prepare_output_dir, read_manifest, run_batch
from MultimodalKneeRegistrationLib.batch.progress import PairProgress
from MultimodalKneeRegistrationLib.batch.summary import count_outcomes, exit_code, format_counts
from MultimodalKneeRegistrationLib.errors import KneeRegistrationError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="register a cohort on SLURM/PBS through dask-jobqueue")
    parser.add_argument("manifest", metavar="MANIFEST.csv")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="on a file system all nodes see")
    parser.add_argument("--system", choices=("slurm", "pbs"), required=True)
    parser.add_argument("--nodes", type=int, default=2, help="most node jobs at once (released when idle)")
    parser.add_argument("--cores-per-node", type=int, default=32)
    parser.add_argument("--memory-per-node", default="128GB", help="e.g. 128GB")
    parser.add_argument("--pairs-per-node", type=int,
                        help="pairs registered at once per node (default: half the cores: each pair uses "
                             "1-2 threads with the deterministic default)")
    parser.add_argument("--walltime", default="04:00:00")
    parser.add_argument("--queue")
    parser.add_argument("--account")
    parser.add_argument("--prologue", action="append", default=[], metavar="LINE",
                        help="shell line run before the worker starts (module load, venv activation); repeatable")
    parser.add_argument("--overwrite-failed", action="store_true", help="as for knee-register batch")
    parser.add_argument("--print-job-script", action="store_true",
                        help="print the job script a node would get, and submit nothing")
    return parser


def make_cluster(args: argparse.Namespace):
    """A dask-jobqueue cluster whose node jobs each run ``pairs`` single-threaded worker processes."""
    import dask_jobqueue

    pairs = args.pairs_per_node or max(1, args.cores_per_node // 2)
    common = dict(cores=pairs, processes=pairs, memory=args.memory_per_node, walltime=args.walltime,
                  queue=args.queue, account=args.account, job_script_prologue=list(args.prologue),
                  job_name="knee-batch")
    if args.system == "slurm":  # dask's cores = worker threads; ask SLURM for the whole node's cores
        return dask_jobqueue.SLURMCluster(job_cpu=args.cores_per_node, **common)
    return dask_jobqueue.PBSCluster(
        resource_spec=f"select=1:ncpus={args.cores_per_node}:mem={args.memory_per_node}", **common)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import dask_jobqueue  # noqa: F401
        from distributed import Client
    except ImportError:
        sys.stderr.write("error: this example needs dask-jobqueue. Install it with: "
                         "pip install 'multimodal-knee-registration[dask-jobqueue]'\n")
        return 2
    try:
        jobs = read_manifest(args.manifest)  # every manifest problem before any node is requested
        if args.print_job_script:
            with make_cluster(args) as cluster:
                print(cluster.job_script())
            return 0
        lock = prepare_output_dir(args.output_dir)
        policy = BatchPolicy(str(Path(args.output_dir).expanduser().absolute()), args.overwrite_failed)
        cluster = make_cluster(args)
        cluster.adapt(minimum_jobs=0, maximum_jobs=args.nodes)
        with DaskExecutor(Client(cluster), cluster) as executor:
            outcomes = run_batch(jobs, policy, executor, PairProgress(len(jobs)), Path(args.manifest).name)
        if lock is not None:
            lock.close()
    except KneeRegistrationError as error:
        sys.stderr.write(f"error: {error.message}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; finished pairs are kept. Run the same command again to resume\n")
        return 130
    print(format_counts(count_outcomes(outcomes)), file=sys.stderr)
    return exit_code(outcomes)


if __name__ == "__main__":
    sys.exit(main())
