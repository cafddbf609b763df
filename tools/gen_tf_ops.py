"""Generate src/bastion/scan/tf_pure_ops.txt: the TensorFlow operations bastion treats as pure
(no file, network, process or Python access), each with the reason it was allowed.

The op names come from TensorFlow's generated op wrappers (tensorflow/python/ops/gen_*_ops.py,
one file per op registration module in tensorflow/core/ops), read as text from a tensorflow or
tensorflow-cpu wheel — nothing is imported. Every module below was reviewed: a module is allowed
with its reason, or left out (its ops are "unknown" to bastion and flagged). Single ops of an
allowed module that touch files, the network or the process are excluded by name with the reason.

    pip download tensorflow-cpu==2.21.0 --no-deps -d /tmp/tf
    python tools/gen_tf_ops.py /tmp/tf/tensorflow_cpu-2.21.0-*.whl
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/bastion/scan/tf_pure_ops.txt"

# gen module -> why its operations are pure
ALLOWED_MODULES = {
    "gen_array_ops": "array: shape/layout/indexing on in-memory tensors",
    "gen_math_ops": "math: element-wise and reduction arithmetic",
    "gen_nn_ops": "nn: neural-network kernels on in-memory tensors",
    "gen_bitwise_ops": "bitwise: integer bit operations",
    "gen_special_math_ops": "special math: special functions",
    "gen_spectral_ops": "spectral: FFTs",
    "gen_linalg_ops": "linalg: matrix decompositions and solvers",
    "gen_manip_ops": "manip: tensor rolling",
    "gen_random_ops": "random: samples from in-process generators",
    "gen_stateless_random_ops": "random: stateless samplers",
    "gen_stateless_random_ops_v2": "random: stateless samplers",
    "gen_stateful_random_ops": "random: generator state held in a resource",
    "gen_random_index_shuffle_ops": "random: index permutation",
    "gen_set_ops": "sets: set operations on tensors",
    "gen_sparse_ops": "sparse: sparse-tensor arithmetic",
    "gen_ragged_array_ops": "ragged: ragged-tensor operations",
    "gen_ragged_conversion_ops": "ragged: ragged/dense conversions",
    "gen_ragged_math_ops": "ragged: ragged ranges",
    "gen_count_ops": "counting: bincount-style counts",
    "gen_ctc_ops": "ctc: CTC loss and decoders",
    "gen_candidate_sampling_ops": "sampling: candidate samplers over in-memory data",
    "gen_image_ops": "image: decoding/encoding and transforms of in-memory image bytes",
    "gen_audio_ops": "audio: WAV decoding/encoding and spectrograms of in-memory bytes",
    "gen_string_ops": "strings: string manipulation of in-memory tensors",
    "gen_parsing_ops": "parsing: decoding serialized examples/tensors held in memory",
    "gen_control_flow_ops": "control flow: graph-mode branching and loops",
    "gen_functional_ops": "functional: calls functions of the model's own library (scanned too)",
    "gen_resource_variable_ops": "variables: read/write the model's own variables",
    "gen_state_ops": "variables: read/write the model's own (ref) variables",
    "gen_data_flow_ops": "data flow: in-memory queues, stacks, tensor arrays, staging areas",
    "gen_list_ops": "tensor lists: in-memory lists",
    "gen_map_ops": "tensor maps: in-memory maps",
    "gen_optional_ops": "optionals: in-memory optional values",
    "gen_composite_tensor_ops": "composite tensors: in-memory encoding",
    "gen_lookup_ops": "lookup tables: in-memory hash tables",
    "gen_training_ops": "training: optimizer updates of the model's own variables",
    "gen_boosted_trees_ops": "boosted trees: in-memory ensembles",
    "gen_sdca_ops": "sdca: in-memory linear optimizer",
    "gen_clustering_ops": "clustering: k-means initialisation",
    "gen_rnn_ops": "rnn: fused LSTM/GRU cells",
    "gen_cudnn_rnn_ops": "rnn: cuDNN recurrent kernels",
    "gen_uniform_quant_ops": "quantization: uniform quantized arithmetic",
    "gen_batch_ops": "batching: groups requests and calls a library function",
    "gen_logging_ops": "logging: assertions, summaries as serialized protos, stderr printing",
}
# Reviewed and left out (their ops are flagged as unknown or as risky):
#   gen_io_ops (file readers/writers, checkpoints), gen_dataset_ops and
#   gen_experimental_dataset_ops (file/SQL/TFRecord readers and writers, snapshots),
#   gen_summary_ops (event-file and database writers), gen_debug_ops (dumps to paths/URLs),
#   gen_script_ops (Python functions), gen_filesystem_ops (file-system configuration),
#   gen_checkpoint_ops (read vocab files and checkpoints), gen_collective_ops, gen_nccl_ops,
#   gen_sendrecv_ops (talk to other processes/devices), gen_tpu_ops, gen_tpu_partition_ops,
#   gen_xla_ops (compiled modules with custom calls), gen_sync_ops, gen_user_ops,
#   gen_decode_proto_ops and gen_encode_proto_ops (descriptor_source may name a file).

# Ops of allowed modules that are not pure, with the reason.
EXCLUDED = {
    "ImmutableConst": "memory-maps a named file",
    "RecordInput": "reads records from files matching a pattern",
    "InitializeTableFromTextFile": "reads a named text file",
    "InitializeTableFromTextFileV2": "reads a named text file",
    "FixedUnigramCandidateSampler": "reads the vocab_file attribute's file",
    "PrintV2": "output_stream may be a file path",
    "Abort": "terminates the serving process",
    "RemoteCall": "runs a function on another (remote) device or task",
}

# Ops of left-out modules that are pure, with the reason.
EXTRA = {
    "ShardedFilename": "io: formats a shard file name string; reads and writes nothing",
    "ShardedFilespec": "io: formats a shard file pattern string; reads and writes nothing",
}

_OP = re.compile(r'_apply_op_helper\(\s*"(\w+)"')


def ops_by_module(wheel: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            match = re.fullmatch(r"tensorflow/python/ops/(gen_\w+)\.py", name)
            if match:
                text = archive.read(name).decode("utf-8")
                found[match.group(1)] = set(_OP.findall(text))
    return found


def main(wheel: str) -> None:
    modules = ops_by_module(Path(wheel))
    missing = sorted(set(ALLOWED_MODULES) - set(modules))
    if missing:
        raise SystemExit(f"modules not in the wheel: {missing}")
    lines = [
        f"# Generated by tools/gen_tf_ops.py from {Path(wheel).name}; do not edit by hand.",
        "# TensorFlow operations reviewed as pure: <op><TAB><reason>. Unknown ops are flagged.",
    ]
    entries: dict[str, str] = {}
    for module, reason in sorted(ALLOWED_MODULES.items()):
        for op in modules[module]:
            if op not in EXCLUDED:
                entries.setdefault(op, reason)
    for op, reason in EXTRA.items():
        if not any(op in ops for ops in modules.values()):
            raise SystemExit(f"{op} is not a TensorFlow op of this wheel")
        entries.setdefault(op, reason)
    lines += [f"{op}\t{entries[op]}" for op in sorted(entries)]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(entries)} pure ops written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
