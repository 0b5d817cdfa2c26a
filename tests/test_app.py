"""tw.app.run / tw.flags: a TF1-style script run as a subprocess with flags."""

import os
import subprocess
import sys
import textwrap

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

_SCRIPT = textwrap.dedent("""
    import tensorweave as tw

    flags = tw.app.flags
    flags.DEFINE_integer("steps", 3, "How many steps.")
    flags.DEFINE_float("scale", 1.0, "Scale factor.")
    flags.DEFINE_string("name", "world", "Who to greet.")
    flags.DEFINE_boolean("shout", False, "Upper case.")
    FLAGS = tw.flags.FLAGS

    def main(argv):
        x = tw.constant(float(FLAGS.steps)) * FLAGS.scale
        with tw.Session() as sess:
            value = sess.run(x)
        greeting = f"hello {FLAGS.name}"
        print("RESULT", value, greeting.upper() if FLAGS.shout else greeting, argv[1:])
        return FLAGS.steps % 7  # the exit status

    if __name__ == "__main__":
        tw.app.run()
""")


def _run(tmp_path, *args):
    script = tmp_path / "tf1_script.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_app_run_parses_flags_and_exits_with_main_result(tmp_path):
    r = _run(tmp_path, "--steps=5", "--scale=2.5", "--name=tensorweave", "--shout",
             "--not_a_flag=1", "positional")
    assert r.returncode == 5, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")][0]
    # unknown flags pass through to main's argv, as in TF1's tf.app.run
    assert line == "RESULT 12.5 HELLO TENSORWEAVE ['--not_a_flag=1', 'positional']"


def test_app_run_defaults_and_bad_flag_value(tmp_path):
    r = _run(tmp_path)
    assert r.returncode == 3, r.stderr
    assert "RESULT 3.0 hello world []" in r.stdout
    bad = _run(tmp_path, "--steps=many")
    assert bad.returncode != 0 and "steps" in bad.stderr


def test_flags_are_absl_flags():
    absl_flags = pytest.importorskip("absl.flags")
    import tensorweave as tw
    assert tw.flags is absl_flags and tw.app.flags is absl_flags
    assert tw.flags.FLAGS is absl_flags.FLAGS
