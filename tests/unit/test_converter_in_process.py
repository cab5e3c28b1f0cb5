"""llama.cpp's converter runs in the workbench's process (`run_converter`) with its own modules, and
leaves the process as it found it. Here on stand-in converters laid out like llama.cpp's: a script
beside a ``gguf-py/gguf`` package and a ``conversion`` package. (tests/integration/test_lora.py
converts a real adapter and compares it with the converter run in a new interpreter.)"""

import logging
import sys
import textwrap

import pytest

from workbench.finetune.gguf_adapter import AdapterConversionError, convert_adapter, run_converter


def stand_in(folder, body: str):
    """A converter script in `folder` whose own gguf says where it came from."""
    (folder / "gguf-py" / "gguf").mkdir(parents=True)
    (folder / "gguf-py" / "gguf" / "__init__.py").write_text("WHERE = 'beside the converter'\n")
    (folder / "conversion").mkdir()
    (folder / "conversion" / "__init__.py").write_text("ARCH = 'stand-in'\n")
    script = folder / "convert_lora_to_gguf.py"
    script.write_text(textwrap.dedent(body))
    return script


CONVERTER = """\
    import logging, sys
    import gguf, conversion
    if __name__ == "__main__":
        logging.basicConfig(level=logging.DEBUG)
        logging.getLogger("lora-to-gguf").info("gguf from %s, %s, args %s", gguf.WHERE, conversion.ARCH, sys.argv[1:])
        print("printed")
        sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 3])
def test_the_converter_gets_its_own_gguf_and_the_process_gets_everything_back(tmp_path, status):
    script = stand_in(tmp_path, CONVERTER)
    installed = sys.modules.get("gguf")  # the installed gguf, when something has imported it
    root = logging.getLogger()
    before = (list(sys.path), sys.argv, list(root.handlers), root.level)

    got, printed = run_converter(script, [str(status), "--outtype", "f32"])

    assert got == status
    assert "gguf from beside the converter, stand-in, args ['" + str(status) + "', '--outtype', 'f32']" in printed
    assert "printed" in printed
    assert sys.modules.get("gguf") is installed and "conversion" not in sys.modules
    assert (list(sys.path), sys.argv, list(root.handlers), root.level) == before


def test_a_converter_that_raises_is_a_failure_with_its_traceback_and_the_process_is_restored(tmp_path):
    script = stand_in(tmp_path, """\
        import gguf
        raise KeyError("no tensor map for this architecture")
    """)
    path = list(sys.path)
    status, printed = run_converter(script, [])
    assert status == 1 and "KeyError: 'no tensor map for this architecture'" in printed
    assert sys.path == path and "conversion" not in sys.modules


def test_convert_adapter_names_the_folder_and_quotes_the_converter_on_failure(tmp_path):
    (tmp_path / "tool").mkdir()
    script = stand_in(tmp_path / "tool", """\
        import logging, sys
        logging.basicConfig()
        logging.getLogger("lora-to-gguf").error("Model GPT9ForCausalLM is not supported")
        sys.exit(1)
    """)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    with pytest.raises(AdapterConversionError, match=r"converter failed on .*adapter \(exit 1\):\n"
                                                     r"(.|\n)*Model GPT9ForCausalLM is not supported"):
        convert_adapter(adapter, tmp_path / "out.gguf", tmp_path / "base", tool=script)
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.partial").exists()
