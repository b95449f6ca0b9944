"""Builds the `gcide-minilm-384` benchmark dataset: English dictionary texts embedded with
all-MiniLM-L6-v2, both taken from wheels that `cargo xtask dataset` has fetched and checked.

    python embed_gcide_minilm.py --manifest datasets/datasets.json --name gcide-minilm-384 \
        --model-wheel M.whl --text-wheel T.whl --out DIR [--threads 2] [--limit N]

Nothing is downloaded here: the texts and the model weights are read straight out of the two
wheels (zip files), and the runtime packages (numpy, tokenizers, safetensors, onnx,
onnxruntime) must already be installed at the versions the manifest pins.

Recipe (every step is deterministic; see the manifest entry for the numbers):
1. Texts: every definition of the dictionary as "headword: definition", and every usage
   example as it stands, whitespace collapsed, exact duplicates dropped.
2. Order: by the sha256 of each text's UTF-8 bytes (ties cannot happen after de-duplication).
   The first `query_rows` texts are the queries, the next `base_rows` the base; the rest are
   unused. So the two sets are disjoint and the split does not depend on any RNG.
3. Model: the BERT encoder of all-MiniLM-L6-v2 (6 layers, 384 wide) rebuilt as an ONNX graph
   from the safetensors weights and run by onnxruntime on the CPU, fp32; inputs truncated at
   256 tokens (the model's sentence-transformers max_seq_length); mean pooling over the real
   tokens; then L2-normalised, as the model's own Normalize module does. Metric: angular.
4. Output in --out: queries.npy and base.npy (float32, C order, rows in the order of 2.),
   query_texts.txt and base_texts.txt (one text per line, same order), and stamp.json, written
   last, with the versions used, timings and the sha256 of every output file.

Vectors can differ in the last bits between CPUs (SIMD kernels), so only the texts' checksums
are pinned in the manifest; the stamp records the vectors' checksums of this build.
"""

import argparse
import hashlib
import importlib.metadata
import io
import json
import os
import sys
import time
import zipfile

import numpy as np


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_runtime(pins):
    """Fails unless every `name==version` pin is the installed version."""
    for pin in pins:
        name, version = pin.split("==")
        found = importlib.metadata.version(name)
        if found != version:
            sys.exit(f"{name} {found} is installed, the recipe pins {version}")


def read_member(wheel, member, expected_sha256):
    with zipfile.ZipFile(wheel) as z:
        data = z.read(member)
    found = sha256_bytes(data)
    if found != expected_sha256:
        sys.exit(f"{member} in {wheel}: sha256 {found}, expected {expected_sha256}")
    return data


def dictionary_texts(wheel, prefix):
    """Definitions as "headword: definition" and usage examples, de-duplicated."""
    seen = set()
    texts = []

    def add(text):
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            texts.append(text)

    with zipfile.ZipFile(wheel) as z:
        members = sorted(
            n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")
        )
        if not members:
            sys.exit(f"no {prefix}*.json in {wheel}")
        for member in members:
            entries = json.loads(z.read(member).decode("utf-8"))
            for key, entry in entries.items():
                head = " ".join((entry.get("entry") or key).split())
                for pos in entry.get("pos") or []:
                    for definition in pos.get("definitions") or []:
                        text = " ".join((definition.get("text") or "").split())
                        if text:
                            add(f"{head}: {text}")
                        for example in definition.get("examples") or []:
                            add(example)
    return texts


def split(texts, query_rows, base_rows):
    ordered = sorted(texts, key=lambda t: hashlib.sha256(t.encode("utf-8")).digest())
    if len(ordered) < query_rows + base_rows:
        sys.exit(
            f"only {len(ordered)} distinct texts, the recipe needs {query_rows} + {base_rows}"
        )
    return ordered[:query_rows], ordered[query_rows : query_rows + base_rows]


def texts_sha256(texts):
    return sha256_bytes("".join(t + "\n" for t in texts).encode("utf-8"))


class MiniLM:
    """A BERT encoder built as an ONNX graph from safetensors weights, run by onnxruntime."""

    def __init__(self, weights, tokenizer_json, layers, heads, max_tokens, threads):
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        w = load_safetensors(weights)
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        hidden = w["embeddings.word_embeddings.weight"].shape[1]
        head_dim = hidden // heads
        self.dims = hidden

        initializers, nodes = [], []
        counter = [0]

        def const(name, array):
            initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
            return name

        def node(kind, inputs, **attrs):
            counter[0] += 1
            out = f"v{counter[0]}"
            nodes.append(helper.make_node(kind, inputs, [out], **attrs))
            return out

        def layer_norm(x, prefix):
            return node(
                "LayerNormalization",
                [x, const(prefix + ".g", w[prefix + ".weight"]), const(prefix + ".b", w[prefix + ".bias"])],
                axis=-1,
                epsilon=1e-12,
            )

        def linear(x, prefix):
            weight = const(prefix + ".wt", w[prefix + ".weight"].T)
            return node("Add", [node("MatMul", [x, weight]), const(prefix + ".b", w[prefix + ".bias"])])

        # Inputs: token ids (B, T), positions (T), additive attention mask (B, 1, 1, T) and
        # the pooling mask (B, T, 1).
        x = node(
            "Add",
            [
                node("Gather", [const("word", w["embeddings.word_embeddings.weight"]), "ids"]),
                node("Gather", [const("position", w["embeddings.position_embeddings.weight"]), "positions"]),
            ],
        )
        x = node("Add", [x, const("token_type", w["embeddings.token_type_embeddings.weight"][0])])
        x = layer_norm(x, "embeddings.LayerNorm")
        split_heads = const("split_heads", np.array([0, 0, 3, heads, head_dim], np.int64))
        merge_heads = const("merge_heads", np.array([0, 0, hidden], np.int64))
        scale = const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
        for i in range(layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate(
                [w[p + f"attention.self.{k}.weight"] for k in ("query", "key", "value")]
            ).T
            qkv_b = np.concatenate([w[p + f"attention.self.{k}.bias"] for k in ("query", "key", "value")])
            qkv = node("Add", [node("MatMul", [x, const(p + "qkv.wt", qkv_w)]), const(p + "qkv.b", qkv_b)])
            qkv = node("Transpose", [node("Reshape", [qkv, split_heads])], perm=[2, 0, 3, 1, 4])
            q, k, v = (
                node("Gather", [qkv, const(p + f"pick{j}", np.array(j, np.int64))], axis=0)
                for j in range(3)
            )
            scores = node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])])
            scores = node("Add", [node("Mul", [scores, scale]), "mask_bias"])
            context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
            context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
            x = layer_norm(node("Add", [x, linear(context, p + "attention.output.dense")]), p + "attention.output.LayerNorm")
            h = node("Gelu", [linear(x, p + "intermediate.dense")])
            x = layer_norm(node("Add", [x, linear(h, p + "output.dense")]), p + "output.LayerNorm")
        summed = node("ReduceSum", [node("Mul", [x, "mask_pool"]), const("axis1", np.array([1], np.int64))], keepdims=0)
        nodes[-1].output[0] = "summed"
        assert summed == f"v{counter[0]}"
        graph = helper.make_graph(
            nodes,
            "minilm",
            [
                helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "T"]),
                helper.make_tensor_value_info("positions", TensorProto.INT64, ["T"]),
                helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["B", 1, 1, "T"]),
                helper.make_tensor_value_info("mask_pool", TensorProto.FLOAT, ["B", "T", 1]),
            ],
            [helper.make_tensor_value_info("summed", TensorProto.FLOAT, ["B", hidden])],
            initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        onnx.checker.check_model(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts, batch=32, label="", progress_every=20000):
        """L2-normalised mean-pooled embeddings, rows in the order of `texts`."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        # Batches of similar length waste little on padding; the order is fixed by the texts.
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dims), np.float32)
        start = time.monotonic()
        next_report = progress_every
        for s in range(0, len(texts), batch):
            rows = order[s : s + batch]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.float32)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = encodings[i].ids
                mask[r, : lengths[i]] = 1.0
            (summed,) = self.session.run(
                None,
                {
                    "ids": ids,
                    "positions": np.arange(width, dtype=np.int64),
                    "mask_bias": ((1.0 - mask) * np.float32(-1e9))[:, None, None, :],
                    "mask_pool": mask[:, :, None],
                },
            )
            mean = summed / mask.sum(axis=1, keepdims=True)
            out[rows] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
            done = s + len(rows)
            if done >= next_report or done == len(texts):
                elapsed = time.monotonic() - start
                rate = done / max(elapsed, 1e-9)
                print(
                    f"  {label}{done}/{len(texts)} texts, {rate:.0f}/s, "
                    f"{(len(texts) - done) / rate:.0f} s to go",
                    flush=True,
                )
                next_report += progress_every
        return out


def save_npy(path, array):
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
    os.replace(tmp, path)


def save_lines(path, lines):
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model-wheel", required=True)
    ap.add_argument("--text-wheel", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--limit",
        type=int,
        default=0,
        help="development only: embed just the first N queries and N base texts",
    )
    args = ap.parse_args()

    with open(args.manifest, encoding="utf-8") as f:
        entry = json.load(f)[args.name]
    check_runtime(entry["runtime"])
    text, model = entry["text"], entry["model"]
    started = time.monotonic()

    texts = dictionary_texts(args.text_wheel, text["members_prefix"])
    queries, base = split(texts, entry["query_rows"], entry["base_rows"])
    print(f"{len(texts)} distinct texts: {len(queries)} queries, {len(base)} base", flush=True)
    for label, chosen, key in (("query", queries, "query_texts_sha256"), ("base", base, "base_texts_sha256")):
        found = texts_sha256(chosen)
        if found != text[key]:
            sys.exit(f"{label} texts: sha256 {found}, the manifest has {text[key]}")
    if args.limit:
        queries, base = queries[: args.limit], base[: args.limit]

    weights = read_member(args.model_wheel, model["weights"], model["weights_sha256"])
    tokenizer = read_member(args.model_wheel, model["tokenizer"], model["tokenizer_sha256"])
    encoder = MiniLM(
        weights,
        tokenizer.decode("utf-8"),
        layers=model["layers"],
        heads=model["heads"],
        max_tokens=model["max_tokens"],
        threads=args.threads,
    )
    if encoder.dims != entry["dims"]:
        sys.exit(f"the model is {encoder.dims}-d, the manifest says {entry['dims']}")

    # A sanity check that the encoder is the model and not noise: a paraphrase must sit
    # closer than an unrelated sentence.
    probe = encoder.embed(
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]
    )
    near, far = float(probe[0] @ probe[1]), float(probe[0] @ probe[2])
    print(f"sanity: cos(paraphrase) {near:.3f}, cos(unrelated) {far:.3f}", flush=True)
    if not near > far + 0.2:
        sys.exit("the encoder fails the paraphrase sanity check")

    os.makedirs(args.out, exist_ok=True)
    stamp_path = os.path.join(args.out, "stamp.json")
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    t0 = time.monotonic()
    query_vectors = encoder.embed(queries, label="queries: ")
    t1 = time.monotonic()
    base_vectors = encoder.embed(base, label="base: ")
    t2 = time.monotonic()

    outputs = {
        "queries": "queries.npy",
        "base": "base.npy",
        "query_texts": "query_texts.txt",
        "base_texts": "base_texts.txt",
    }
    save_npy(os.path.join(args.out, outputs["queries"]), query_vectors)
    save_npy(os.path.join(args.out, outputs["base"]), base_vectors)
    save_lines(os.path.join(args.out, outputs["query_texts"]), queries)
    save_lines(os.path.join(args.out, outputs["base_texts"]), base)
    stamp = {
        "name": args.name,
        "limit": args.limit,
        "query_rows": len(queries),
        "base_rows": len(base),
        "dims": encoder.dims,
        "threads": args.threads,
        "runtime": {p.split("==")[0]: importlib.metadata.version(p.split("==")[0]) for p in entry["runtime"]},
        "python": sys.version.split()[0],
        "seconds": {
            "total": round(time.monotonic() - started, 1),
            "embed_queries": round(t1 - t0, 1),
            "embed_base": round(t2 - t1, 1),
        },
        "files": {
            key: {"path": file, "sha256": sha256_file(os.path.join(args.out, file))}
            for key, file in outputs.items()
        },
    }
    tmp = stamp_path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stamp, f, indent=2)
        f.write("\n")
    os.replace(tmp, stamp_path)
    print(
        f"embedded {len(queries)} queries in {t1 - t0:.0f} s and {len(base)} base texts in "
        f"{t2 - t1:.0f} s ({(len(queries) + len(base)) / max(t2 - t0, 1e-9):.0f} texts/s, "
        f"{args.threads} threads)",
        flush=True,
    )


if __name__ == "__main__":
    main()
