"""Tool sub-commands of the ``tensorweave`` command line (registered in ``cli.py``):

    tensorweave board LOGDIR [--port 6006]                     TensorBoard on 127.0.0.1
    tensorweave export SRC DEST [--format onnx|saved_model|pb|pbtxt] [--inputs x] [--outputs y]
    tensorweave serve EXPORT_DIR [--port 8501] [--model-name NAME]
    tensorweave inspect GRAPH.pb|GRAPH.pbtxt|EXPORT_DIR [--json]

``SRC`` of ``export`` is a SavedModel directory (its latest version) or a frozen GraphDef file;
``--inputs``/``--outputs`` name the tensors when the source has no signature.
Each command imports what it needs only when it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import click


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("board")
@click.argument("logdir", type=click.Path(file_okay=False))
@click.option("--port", type=int, default=6006, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback by default).")
def board(logdir, port, host):
    """Start TensorBoard on LOGDIR (event files from tw.summary.FileWriter)."""
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", host,
           "--port", str(port)]
    click.echo(f"TensorBoard at http://{host}:{port}/ (Ctrl-C to stop)")
    proc = subprocess.Popen(cmd)

    def stop(signum, frame):  # SIGTERM to us stops the TensorBoard we started
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        sys.exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _split_names(s):
    return [n.strip() for n in (s or "").split(",") if n.strip()]


def _graph_source(src, inputs, outputs):
    """(session, {name: input tensor}, {name: output tensor}) for a SavedModel or GraphDef."""
    import tensorweave as tw
    from tensorweave.framework import graph_def as gdef
    from tensorweave.saved_model import latest_version_dir, load

    if os.path.isdir(src):
        try:
            latest_version_dir(src)
        except FileNotFoundError as e:
            _fail(str(e))
        p = load(src)
        ins, outs = dict(p.inputs), dict(p.outputs)
        sess = p.session
    elif os.path.isfile(src):
        gd = gdef.read_graph_def(src)
        g = tw.Graph()
        with g.as_default():
            try:
                tw.import_graph_def(gd, name="")
            except ValueError as e:
                _fail(str(e))
        sess = tw.Session(graph=g)
        ins, outs = {}, {}
    else:
        _fail(f"{src} is neither a SavedModel directory nor a GraphDef file")
    g = sess.graph

    def tensor(n):
        try:
            return g.get_tensor_by_name(n if ":" in n else n + ":0")
        except (KeyError, ValueError) as e:
            _fail(str(e))

    if inputs:
        ins = {n.split(":")[0]: tensor(n) for n in _split_names(inputs)}
    if outputs:
        outs = {n.split(":")[0]: tensor(n) for n in _split_names(outputs)}
    if not outs:
        _fail("name the output tensors with --outputs (the source has no signature)")
    if not ins:
        ins = {t.op.name: t for t in _placeholders_of(g)}
    return sess, ins, outs


def _placeholders_of(g):
    return [op.outputs[0] for op in g.get_operations() if op.type == "Placeholder"]


@click.command("export")
@click.argument("src", type=click.Path(exists=True))
@click.argument("dest", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx", "saved_model", "pb", "pbtxt"]),
              default=None, help="Default: from DEST's extension (.onnx, .pb, .pbtxt), else "
              "a SavedModel directory.")
@click.option("--inputs", default=None, help="Comma-separated input tensor names.")
@click.option("--outputs", default=None, help="Comma-separated output tensor names.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
def export(src, dest, fmt, inputs, outputs, opset):
    """Convert a SavedModel or frozen GraphDef (SRC) to ONNX, a SavedModel or a GraphDef."""
    if fmt is None:
        ext = os.path.splitext(dest)[1].lower()
        fmt = {".onnx": "onnx", ".pb": "pb", ".pbtxt": "pbtxt"}.get(ext, "saved_model")
    sess, ins, outs = _graph_source(src, inputs, outputs)
    if fmt == "onnx":
        import tensorweave as tw
        try:
            tw.onnx.export(sess, outs, dest, inputs=ins, opset=opset)
        except ValueError as e:
            _fail(str(e))
        click.echo(f"wrote ONNX model {dest} (inputs {sorted(ins)}, outputs {sorted(outs)})")
    elif fmt == "saved_model":
        from tensorweave.saved_model import simple_save
        path = simple_save(sess, dest, ins, outs)
        click.echo(f"wrote SavedModel {path}")
    else:
        from tensorweave.framework import graph_def as gdef
        frozen = gdef.convert_variables_to_constants(
            sess, gdef.as_graph_def(sess.graph),
            sorted({t.op.name for t in list(outs.values()) + list(ins.values())}))
        d, name = os.path.split(os.path.abspath(dest))
        gdef.write_graph(frozen, d, name, as_text=fmt == "pbtxt")
        click.echo(f"wrote GraphDef {dest} ({len(frozen.node)} nodes)")


@click.command("serve")
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback by default).")
@click.option("--model-name", default=None, help="Name in the URL (default: the directory's "
              "name, or its parent's for a version directory).")
@click.option("--max-batch-size", type=int, default=64, show_default=True)
@click.option("--batch-timeout-ms", type=float, default=2.0, show_default=True)
@click.option("--max-body-bytes", type=int, default=8 << 20, show_default=True)
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve(export_dir, port, host, model_name, max_batch_size, batch_timeout_ms, max_body_bytes,
          verbose):
    """Serve a SavedModel with TensorFlow Serving's REST API (POST /v1/models/NAME:predict)."""
    from tensorweave.serving import ModelServer

    if model_name is None:
        p = os.path.abspath(export_dir)
        model_name = os.path.basename(os.path.dirname(p) if os.path.basename(p).isdigit()
                                      else p)
    try:
        server = ModelServer(export_dir, model_name=model_name, host=host, port=port,
                             max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                             max_body_bytes=max_body_bytes, verbose=verbose)
    except (FileNotFoundError, OSError, ValueError) as e:
        _fail(str(e))
    click.echo(f"serving {model_name} version {server.predictor.version} at "
               f"http://{host}:{server.port}/v1/models/{model_name}:predict", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def describe_graph_def(gd) -> dict:
    """Ops (by type), inputs, outputs and variables of a GraphDef, as plain data."""
    from tensorweave.framework import graph_def as gdef

    consumed = {gdef._parse_input(s)[0] for n in gd.node for s in n.input}
    def spec(n):
        d = {"name": n.name + ":0"}
        if "dtype" in n.attr:
            d["dtype"] = gdef.attr_value_to_python(n.attr["dtype"]).name
        if "shape" in n.attr:
            s = gdef.attr_value_to_python(n.attr["shape"])
            d["shape"] = s.as_list() if s.ndims is not None else None
        return d

    skip = {"NoOp", "Assign", "Const", "VariableV2", "SaveV2", "RestoreV2"}
    return {
        "nodes": len(gd.node),
        "ops": dict(sorted(Counter(n.op for n in gd.node).items())),
        "inputs": [spec(n) for n in gd.node if n.op in ("Placeholder",
                                                         "PlaceholderWithDefault")],
        "outputs": [n.name for n in gd.node if n.name not in consumed and n.op not in skip],
        "variables": [spec(n) for n in gd.node if n.op in ("VariableV2", "Variable",
                                                            "VarHandleOp")],
        "unsupported_ops": gdef.unsupported_op_types(gd),
    }


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_cmd(path, as_json):
    """List the ops, inputs, outputs and variables of a GraphDef file or SavedModel dir."""
    import tensorweave  # noqa: F401  (registers op types for the unsupported-op check)
    from tensorweave.framework import graph_def as gdef

    if os.path.isdir(path):
        from tensorweave import saved_model as sm
        try:
            version_dir = sm.latest_version_dir(path)
        except FileNotFoundError as e:
            _fail(str(e))
        model = sm.read_saved_model(version_dir)
        mg = model.meta_graphs[0]
        info = describe_graph_def(mg.graph_def)
        info["saved_model"] = version_dir
        info["tags"] = list(mg.meta_info_def.tags)
        info["signatures"] = {
            k: {"inputs": {n: v.name for n, v in s.inputs.items()},
                "outputs": {n: v.name for n, v in s.outputs.items()}}
            for k, s in mg.signature_def.items()}
        info["variables"] = [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype)}
                             for k, v in sm.read_variables(version_dir).items()]
    else:
        try:
            info = describe_graph_def(gdef.read_graph_def(path))
        except Exception as e:  # noqa: BLE001  (not a GraphDef)
            _fail(f"{path} is not a GraphDef (.pb or .pbtxt): {e}")
        info["graph_def"] = path
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    for key in ("saved_model", "graph_def", "tags"):
        if key in info:
            click.echo(f"{key}: {info[key]}")
    click.echo(f"nodes: {info['nodes']}")
    click.echo("ops: " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()))
    for k, s in info.get("signatures", {}).items():
        click.echo(f"signature {k}: inputs {s['inputs']} -> outputs {s['outputs']}")
    click.echo(f"inputs: {info['inputs']}")
    click.echo(f"outputs: {info['outputs']}")
    click.echo(f"variables: {info['variables']}")
    if info["unsupported_ops"]:
        click.echo(f"unsupported by tensorweave: {', '.join(info['unsupported_ops'])}")
