"""The diffusers loader: base models, Kohya LoRAs attached in full (or a clear error), weights, fusing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
import torch  # noqa: E402
from tiny_sdxl import kohya_modules, save_tiny_pipeline, write_kohya_lora  # noqa: E402

from faceswap_kohya.diffusion.lora import all_adapters, attach_lora, fuse, read_lora_modules, set_weights
from faceswap_kohya.diffusion.pipeline import SDXL_CONFIG, config_folder, load_pipeline, pick_dtype
from faceswap_kohya.errors import UserError  # noqa: E402
from faceswap_kohya.models.base import resolve_base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sdxl")


@pytest.fixture
def pipe(tiny):
    return load_pipeline(str(tiny), device="cpu")


def image(pipe, seed=1, prompt="myface woman, portrait"):
    g = torch.Generator().manual_seed(seed)
    return pipe(prompt=prompt, num_inference_steps=3, guidance_scale=5.0, width=64, height=64, generator=g,
                output_type="np").images[0]


pytestmark = pytest.mark.usefixtures("user_home")  # a private FACESWAP_KOHYA_HOME


# ---------------------------------------------------------------- base models
def test_shipped_sdxl_config_is_the_real_sdxl_base():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    folder = SDXL_CONFIG
    unet = json.loads((folder / "unet" / "config.json").read_text())
    te1 = json.loads((folder / "text_encoder" / "config.json").read_text())
    te2 = json.loads((folder / "text_encoder_2" / "config.json").read_text())
    assert unet["cross_attention_dim"] == te1["hidden_size"] + te2["hidden_size"] == 2048
    assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + te2["projection_dim"]
    with init_empty_weights():
        model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 2.57  # SDXL's UNet


def test_config_folder_has_offline_tokenizers(user_home):
    from transformers import CLIPTokenizer

    folder = config_folder()
    assert folder.is_relative_to(user_home)
    for sub in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json", "vae/config.json"):
        assert (folder / sub).is_file()
    tok1 = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    ids = tok1("a photo of myface").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407
    assert tok2.pad_token == "!" and tok1.model_max_length == 77


def test_base_model_errors(tmp_path, user_home):
    with pytest.raises(UserError, match="does not exist"):
        resolve_base(str(tmp_path / "missing.safetensors"))
    with pytest.raises(UserError, match="does not exist"):
        resolve_base("./models/sdxl")  # local-looking, never sent to the hub
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a checkpoint"):
        resolve_base(str(tmp_path / "notes.txt"))
    with pytest.raises(UserError, match="no model_index.json"):
        resolve_base(str(tmp_path))
    with pytest.raises(UserError, match="check-model"):
        resolve_base("builtin:pipeline-check")
    assert resolve_base("stabilityai/stable-diffusion-xl-base-1.0") == ("hub", "stabilityai/stable-diffusion-xl-base-1.0")


def test_truncated_base_file_is_a_clear_error(tmp_path, user_home):
    import json
    import struct

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")  # the header itself is cut: refused before loading
    with pytest.raises(UserError, match="model.safetensors: not a readable .safetensors file, truncated or corrupt"):
        load_pipeline(str(bad), device="cpu")
    header = json.dumps({"model.diffusion_model.x": {"dtype": "F16", "shape": [100], "data_offsets": [0, 200]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 10)  # a good header, the weights cut
    with pytest.raises(UserError, match="cannot load it as an SDXL pipeline"):
        load_pipeline(str(bad), device="cpu")


def test_cpu_defaults_to_fp32(pipe):
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(UserError, match="fp32, fp16, bf16"):
        pick_dtype("cpu", "int8")


# ---------------------------------------------------------------- Kohya names
def test_kohya_names_match_sd_scripts_sdxl_layout(pipe):
    names = set(kohya_modules(pipe, conv=True))
    # names sd-scripts writes for SDXL (original layout), present at the same places in the tiny UNet
    for expected in ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                     "lora_unet_input_blocks_8_1_proj_in", "lora_unet_middle_block_1_transformer_blocks_1_ff_net_2",
                     "lora_unet_output_blocks_5_1_transformer_blocks_0_attn2_to_out_0",
                     "lora_unet_input_blocks_3_0_op", "lora_unet_output_blocks_2_2_conv",
                     "lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_output_blocks_8_0_skip_connection",
                     "lora_unet_middle_block_2_emb_layers_1",
                     "lora_te1_text_model_encoder_layers_1_self_attn_q_proj", "lora_te2_text_model_encoder_layers_0_mlp_fc2"):
        assert expected in names
    assert not any("input_blocks_1_1" in n for n in names)  # SDXL's first block has no attention


# ---------------------------------------------------------------- attaching LoRAs
@pytest.mark.parametrize("layout,conv", [("original", False), ("original", True), ("diffusers", False)])
def test_every_module_attaches_and_changes_the_image(pipe, tmp_path, layout, conv):
    path = tmp_path / "myface.safetensors"
    tensors = write_kohya_lora(pipe, path, conv=conv, layout=layout)
    base = image(pipe)
    n = attach_lora(pipe, path, weight=1.0)
    assert n == len(tensors) // 3 == len(read_lora_modules(path))
    assert n > (250 if conv else 150)
    assert abs(image(pipe) - base).mean() > 1e-3


def test_per_layer_delta_is_weight_times_alpha_over_rank(pipe, tmp_path):
    path = tmp_path / "a.safetensors"
    tensors = write_kohya_lora(pipe, path, rank=4, alpha=2.0)
    name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    layer = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        base = layer(x)
        attach_lora(pipe, path, weight=0.7)
        got = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k(x)
        delta = x @ tensors[f"{name}.lora_down.weight"].T @ tensors[f"{name}.lora_up.weight"].T
    torch.testing.assert_close(got, base + 0.7 * (2.0 / 4) * delta, rtol=1e-5, atol=1e-5)


def test_image_change_grows_with_weight(pipe, tmp_path):
    path = tmp_path / "a.safetensors"
    write_kohya_lora(pipe, path)
    base = image(pipe)
    attach_lora(pipe, path, weight=0.3)
    small = abs(image(pipe) - base).mean()
    set_weights(pipe, {"a": 1.0})
    big = abs(image(pipe) - base).mean()
    assert 0 < small < big


def test_two_loras_combine(pipe, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ta = write_kohya_lora(pipe, a, seed=1)
    tb = write_kohya_lora(pipe, b, seed=2, text_encoders=False)
    attach_lora(pipe, a, weight=0.5)
    attach_lora(pipe, b, weight=0.8)
    assert set(pipe.fsk_loras) == {"a", "b"}
    name = "lora_unet_output_blocks_3_1_transformer_blocks_0_attn1_to_v"
    layer = pipe.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_v
    x = torch.randn(3, layer.in_features)

    def d(t):
        return x @ t[f"{name}.lora_down.weight"].T @ t[f"{name}.lora_up.weight"].T * 0.5

    with torch.no_grad():
        got = layer(x)
        base = layer.base_layer(x)
    torch.testing.assert_close(got, base + 0.5 * d(ta) + 0.8 * d(tb), rtol=1e-5, atol=1e-5)


def test_fused_matches_unfused_and_weight_zero_is_near_the_base(tiny, tmp_path):
    path = tmp_path / "myface.safetensors"
    p1 = load_pipeline(str(tiny), device="cpu")
    write_kohya_lora(p1, path, conv=True)
    base = image(p1)
    attach_lora(p1, path, weight=0.8)
    unfused = image(p1)
    p2 = load_pipeline(str(tiny), device="cpu")
    attach_lora(p2, path)
    fuse(p2, {"myface": 0.8})
    assert not all_adapters(p2)  # merged into the weights, no adapter layers left
    fused = image(p2)
    assert abs(fused - unfused).max() < 1e-4 and abs(fused - base).mean() > 1e-3
    p3 = load_pipeline(str(tiny), device="cpu")
    attach_lora(p3, path)
    fuse(p3, {"myface": 0.0})
    assert abs(image(p3) - base).max() < 1e-4  # not bit-exact once peft has wrapped the layers (~1e-6)


def test_adapter_name_reuse_is_refused(pipe, tmp_path):
    path = tmp_path / "a.safetensors"
    write_kohya_lora(pipe, path)
    attach_lora(pipe, path, adapter_name="face")
    with pytest.raises(UserError, match="already loaded"):
        attach_lora(pipe, path, adapter_name="face")
    assert attach_lora(pipe, path) > 0  # the same file again gets a fresh name
    assert set(pipe.fsk_loras) == {"face", "a"}


# ---------------------------------------------------------------- bad LoRA files
def test_missing_lora_is_not_treated_as_a_hub_id(pipe, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        attach_lora(pipe, tmp_path / "user/repo")


def test_non_lora_file(pipe, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.conv_in.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(UserError, match="not a LoRA.*full model"):
        attach_lora(pipe, path)


def test_truncated_lora(pipe, tmp_path):
    path = tmp_path / "a.safetensors"
    write_kohya_lora(pipe, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        attach_lora(pipe, cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="truncated or corrupt"):
        attach_lora(pipe, junk)


def test_sd15_lora(pipe, tmp_path):
    from safetensors.torch import save_file

    t = {}
    for name, (i, o) in {"lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768),
                         "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (768, 320)}.items():
        t |= {f"{name}.lora_down.weight": torch.zeros(4, i), f"{name}.lora_up.weight": torch.zeros(o, 4),
              f"{name}.alpha": torch.tensor(4.0)}
    path = tmp_path / "sd15.safetensors"
    save_file(t, str(path))
    with pytest.raises(UserError, match="SD 1.x"):
        attach_lora(pipe, path)


def test_mixed_key_layouts(pipe, tmp_path):
    from safetensors.torch import save_file

    orig = write_kohya_lora(pipe, tmp_path / "o.safetensors", text_encoders=False, only=lambda n: "input_blocks_4" in n)
    diff = write_kohya_lora(pipe, tmp_path / "d.safetensors", text_encoders=False, layout="diffusers",
                            only=lambda n: "up_blocks_1" in n)
    path = tmp_path / "mixed.safetensors"
    save_file(orig | diff, str(path))
    with pytest.raises(UserError, match="mixes two UNet key layouts"):
        attach_lora(pipe, path)


def test_modules_the_model_lacks_are_named(pipe, tmp_path):
    """diffusers ignores keys for blocks the model doesn't have; the loader counts and refuses."""
    from safetensors.torch import save_file

    tensors = write_kohya_lora(pipe, tmp_path / "a.safetensors")
    ghost = "lora_unet_input_blocks_7_1_transformer_blocks_5_attn1_to_q"  # the tiny UNet has 2 blocks there
    tensors |= {f"{ghost}.lora_down.weight": torch.zeros(4, 64), f"{ghost}.lora_up.weight": torch.zeros(64, 4),
                f"{ghost}.alpha": torch.tensor(2.0)}
    path = tmp_path / "extra.safetensors"
    save_file(tensors, str(path))
    n = len(tensors) // 3
    with pytest.raises(UserError, match=f"only {n - 1} of {n} modules attached.*{ghost}"):
        attach_lora(pipe, path)
    assert not all_adapters(pipe)  # the partial adapter was removed again


def test_wrong_shapes_are_refused(pipe, tmp_path):
    from safetensors.torch import save_file

    name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"  # SDXL width 2048, tiny 96
    path = tmp_path / "big.safetensors"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 2048), f"{name}.lora_up.weight": torch.zeros(640, 4),
               f"{name}.alpha": torch.tensor(4.0)}, str(path))
    with pytest.raises(UserError, match="cannot load it"):
        attach_lora(pipe, path)
