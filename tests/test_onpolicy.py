"""sdft_train.onpolicy: the on-policy arm (TRL's SDFTTrainer) from the rows of a published SDFT dataset.

What the student and the teacher are shown, the loss, the record and the card, resume. Every training
here is a few optimizer steps of the tiny model on CPU, sampling a few tokens per answer.
"""

import json
import shlex
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.killed import train_killed
from sdft_data.recipes import get_recipe
from sdft_data.run import distill
from sdft_data.spec import TEACHER_TEMPLATE, Training, TrainSpec, from_dict, parse
from sdft_train import onpolicy
from sdft_train.cli import main as sdft_train
from sdft_train.data import build_examples, load_rows

ROOT = Path(__file__).resolve().parents[1]
# One prompt per step, 4 answers of at most 6 tokens: seconds on the tiny model.
SMALL = ["--method", "on-policy", "--batch-size", 4, "--grad-accum", 1, "--generations", 4,
         "--max-completion-length", 6, "--lr", "1e-2"]


@pytest.fixture(scope="module")
def run_dir(tiny_llama2_dir, tmp_path_factory):
    """A finished GSM8K run distilled in the paper format by the tiny model (the seed model)."""
    from conftest import GSM8K_ROWS

    src = tmp_path_factory.mktemp("src") / "gsm8k.json"
    src.write_text(json.dumps(GSM8K_ROWS))
    out = tmp_path_factory.mktemp("runs") / "run"
    distill(recipe="gsm8k", source=str(src), out=out, model=str(tiny_llama2_dir), format="paper", progress=False,
            max_new_tokens=8)
    return out


def _ok(*args):
    result = CliRunner().invoke(sdft_train, ["train", *map(str, args), "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def _manifest(out: Path) -> dict:
    return json.loads((out / "train_manifest.json").read_text())


def _rows(ids, mask) -> list[list[int]]:
    return [[t for t, m in zip(row, keep) if m] for row, keep in zip(ids.tolist(), mask.tolist())]


@pytest.mark.parametrize("fmt", ["paper", "chat"])
def test_the_student_sees_the_other_arms_prompt_and_only_the_teacher_the_original_response(
        run_dir, tiny_llama2_dir, tmp_path, fmt):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    SDFTTrainer = onpolicy._trl().SDFTTrainer
    from trl.experimental.sdft.loss_utils import compute_topk_self_distillation_loss

    recipe = get_recipe("gsm8k")
    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    # The other arms' prompt ids of each row, by its instruction (gsm8k's user turn is the question itself).
    theirs = build_examples(ds, recipe, tok, fmt=fmt)
    other_arms = {row["question"].strip(): ex["input_ids"][:ex["completion_mask"].index(1)]
                  for row, ex in zip(ds, theirs.rows)}
    prompts = onpolicy.Prompts(recipe, tok, fmt, None)
    examples = onpolicy.build_prompts(ds, prompts, max_length=1024)
    config = Training(method="on-policy", batch_size=4, grad_accum=1, generations=4, max_completion_length=6,
                      max_steps=1)
    net = AutoModelForCausalLM.from_pretrained(tiny_llama2_dir)
    trainer = onpolicy.make_trainer(net, tok, examples, onpolicy.sdft_args(tmp_path, config, 1, False), config,
                                    prompts)
    assert type(trainer).compute_loss is SDFTTrainer.compute_loss, "the loss is TRL's own"
    trainer.model.train()
    drawn = next(iter(trainer.get_train_dataloader()))  # one prompt, 4 times (TRL's sampler)
    batch = trainer._prepare_inputs(drawn)  # samples the answers, builds the teacher's inputs

    prompt_rows = _rows(batch["prompt_ids"], batch["prompt_mask"])
    answers = _rows(batch["completion_ids"], batch["completion_mask"])
    teacher_rows = _rows(batch["teacher_input_ids"], batch["teacher_attention_mask"])
    for row, prompt, answer, teacher in zip(drawn, prompt_rows, answers, teacher_rows):
        instruction, context = row["prompt"][1]["content"], row["privileged_context"]
        source = next(r for r in ds if r["question"].strip() == instruction)
        assert context == source["original_response"].strip() and len(context) > 10
        assert prompt == other_arms[instruction], "the student's prompt is the other arms', token for token"
        assert context not in tok.decode(prompt)
        shown = tok(prompts.teacher_text(instruction, context, TEACHER_TEMPLATE), add_special_tokens=False).input_ids
        assert teacher == shown + answer, "the teacher: TRL's template with the original response, then the answer"
        assert context in tok.decode(shown) and tok.decode(shown).count(instruction) == 1

    # What the model is given when the loss is computed: the student's rows first (with gradients), then the
    # teacher's (without); the loss is TRL's top-k divergence (its defaults) between the two.
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    seen = []
    hook = net.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["input_ids"], kwargs["attention_mask"],
                                                  torch.is_grad_enabled())), with_kwargs=True)
    loss = trainer.compute_loss(trainer.model, batch)
    hook.remove()
    assert len(seen) == 2 and seen[0][2] and not seen[1][2]
    student_in, teacher_in = _rows(seen[0][0], seen[0][1]), _rows(seen[1][0], seen[1][1])
    assert student_in == [p + a for p, a in zip(prompt_rows, answers)] and teacher_in == teacher_rows
    assert not any(row["privileged_context"] in tok.decode(ids) for row, ids in zip(drawn, student_in))

    n = batch["completion_ids"].size(1)
    mask = batch["completion_mask"]
    with torch.no_grad():
        student = trainer.model(input_ids=torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
                                attention_mask=torch.cat([batch["prompt_mask"], mask], 1)).logits[:, -n - 1:-1]
        with trainer.model.disable_adapter():  # the teacher: the model before training
            teacher = trainer.model(input_ids=batch["teacher_input_ids"],
                                    attention_mask=batch["teacher_attention_mask"]).logits[:, -n - 1:-1]
    per_token = compute_topk_self_distillation_loss(student, teacher, distillation_topk=100, distillation_alpha=0.5,
                                                    distillation_add_tail=False)
    expected = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Before the first step the student is the teacher's weights: only the original response in the teacher's
    # prompt makes them disagree.
    assert expected.item() > 1e-3


@pytest.mark.parametrize("fmt", ["paper", "chat"])
def test_the_teacher_sees_the_original_response_where_the_instruction_goes(tiny_llama2_dir, fmt):
    """TRL fills the last user turn, the row's instruction: the response lands inside the train template."""
    from transformers import AutoTokenizer

    from sdft_data import templates

    recipe, tok = get_recipe("alpaca"), AutoTokenizer.from_pretrained(tiny_llama2_dir)
    prompts = onpolicy.Prompts(recipe, tok, fmt, None)
    student = prompts.text(prompts.turns("Name a primary color."))
    assert student == templates.train_prompt(recipe, "Name a primary color.", tok, fmt)
    teacher = prompts.teacher_text("Name a primary color.", "Red.", TEACHER_TEMPLATE)
    assert teacher == templates.train_prompt(recipe, "Name a primary color.\n\nRed.", tok, fmt)
    if fmt == "paper":  # the chat format has no markup around the instruction
        assert teacher.index("### Instruction:") < teacher.index("Red.") < teacher.index("### Response:")


def test_the_on_policy_arm_trains_from_a_published_dataset_and_records_how(run_dir, tiny_llama2_dir, tmp_path):
    from sdft_data.publish import push
    from sdft_train.evaluate import arm_of, read_train_record

    SDFTConfig = onpolicy._trl().SDFTConfig

    hub, out = tmp_path / "hub", tmp_path / "ckpt" / "gsm8k-on-policy"
    push(run_dir, "org/gsm8k-sdft", local=hub, allow_no_rewrites=True)
    result = _ok("--data", "org/gsm8k-sdft@v1", "--hub-dir", hub, "--model", tiny_llama2_dir, "--out", out,
                 "--max-steps", 2, *SMALL)
    record = _manifest(out)
    assert "trained 2 steps on 6 examples (on-policy, " in result.output
    assert (record["arm"], record["responses"], record["optimizer_steps"]) == ("on-policy", "original", 2)
    assert arm_of(read_train_record(out)) == "on-policy"
    assert record["paper"]["differences"][0] == "method on-policy (paper: sft)"
    entry = record["on_policy"]
    assert entry["trainer"] == "trl.experimental.sdft.SDFTTrainer" and entry["privileged_context_column"] == \
        "original_response"
    assert entry["teacher_prompt"]["template"] == SDFTConfig.teacher_prompt_template == TEACHER_TEMPLATE
    assert "{privileged_context}" in entry["teacher_prompt"]["example"]
    assert "{privileged_context}" not in entry["student_prompt"]["example"]
    assert (entry["prompts_per_step"], entry["answers_per_step"], entry["generation"]) == (1, 4,
                                                                                          "transformers generate")
    # TRL's loss and defaults, each departure named: the two set here, the prompt cut TRL would make, and the
    # budget the arms share.
    trl = entry["trl_config"]
    assert (trl["distillation_mode"], trl["distillation_alpha"], trl["distillation_topk"], trl["teacher_model_kind"],
            trl["temperature"]) == ("topk_logits", 0.5, 100, "base", 1.0)
    named = [d.split(" ")[0] for d in entry["deviations"]]
    assert named == ["prompts:", "num_generations", "max_completion_length", "max_prompt_length", "the"]
    assert 0 < entry["answer_tokens"] <= 2 * 4 * 6 and record["tokens"]["trained"] == entry["answer_tokens"]
    assert len(record["losses"]) == 2 and all(loss > 0 for loss in record["losses"])

    card = (out / "README.md").read_text()
    assert "# gsm8k: on-policy arm (LoRA adapter)" in card and "- on-policy" in card
    assert "| teacher | the model before training (`base`), shown the original response |" in card
    assert "shenfeld2026selfdistillation" in card and entry["teacher_prompt"]["example"] in card
    assert "\n\n| the paper's settings |" not in card, "one table"
    command = card.split("## How to reproduce")[1].split("```bash\n")[1].split("\n```")[0]
    argv = shlex.split(command)
    assert argv[:2] == ["sdft-train", "train"] and "--method" in argv
    remade = parse(sdft_train.commands["train"], TrainSpec, argv[2:])
    assert remade.training == from_dict(TrainSpec, record["spec"]).training


def test_full_fine_tuning_on_policy_saves_the_whole_model(run_dir, tiny_llama2_dir, tmp_path):
    out = tmp_path / "full"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--max-steps", 1, "--full", *SMALL)
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    record = _manifest(out)
    assert record["config"]["full"] is True and record["arm"] == "on-policy"
    assert "| method | full fine-tuning |" in (out / "README.md").read_text()


def test_paper_refuses_the_on_policy_method(run_dir, tiny_llama2_dir, tmp_path):
    result = CliRunner().invoke(sdft_train, ["train", "--data", str(run_dir), "--model", str(tiny_llama2_dir),
                                             "--out", str(tmp_path / "x"), "--paper", "--method", "on-policy"])
    assert result.exit_code != 0 and "method on-policy (paper: sft)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_an_on_policy_run_killed_after_a_checkpoint_resumes_to_the_same_end(run_dir, tiny_llama2_dir, tmp_path):
    from safetensors.torch import load_file

    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 4, "--save-steps", 2, *SMALL]
    _ok(*common, "--out", tmp_path / "whole")
    killed = tmp_path / "killed"
    child = train_killed(common, killed, step=2)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-2").is_dir() and not (killed / "train_manifest.json").exists()
    refused = CliRunner().invoke(sdft_train, ["train", *map(str, common), "--generations", "2", "--out", str(killed),
                                              "--resume"])
    assert refused.exit_code != 0 and "differs in: --generations (4 there, 2 here)" in refused.output

    _ok(*common, "--out", killed, "--resume")
    whole, resumed = _manifest(tmp_path / "whole"), _manifest(killed)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["optimizer_steps"] == whole["optimizer_steps"] == 4
    # The sampling resumes where it stopped (the checkpoint holds the random state): the same answers, losses
    # and weights as the run that was never stopped.
    assert resumed["on_policy"]["answer_tokens"] == whole["on_policy"]["answer_tokens"]
    assert resumed["losses"] == pytest.approx(whole["losses"], abs=1e-6)
    a, b = load_file(tmp_path / "whole" / "adapter_model.safetensors"), load_file(killed / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
