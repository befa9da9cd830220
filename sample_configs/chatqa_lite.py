"""The cookbook's chatqa-lite experiment through the Python API, on the bundled data and built-in model.

Run it with `python sample_configs/chatqa_lite.py`. It is the cookbook's code with its import
lines pointed at rftui, the dataset at the bundled JSONL file, the model at `rftui/tiny-llama`,
and the metrics computed locally (`evaluate.load` needs the Hub).
"""
from pathlib import Path

from datasets import load_dataset
from rouge_score import rouge_scorer
from sacrebleu import corpus_bleu
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftui import Experiment, List, RFGridSearch, RFLoraConfig, RFModelConfig, RFSFTConfig

DATA_FILE = str(Path(__file__).resolve().parent / "data" / "support.jsonl")
MODEL_NAME = "rftui/tiny-llama"


def sample_formatting_function(row):
    """Format each example into chat format for SFT training."""
    SYSTEM_PROMPT = ("You are a helpful and friendly customer support assistant. "
                     "Please answer the user's query to the best of your ability.")
    return {
        "prompt": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": row["instruction"]},
        ],
        "completion": [{"role": "assistant", "content": row["response"]}],
    }


def sample_compute_metrics(eval_preds):
    """ROUGE-L and BLEU of generated responses, computed locally."""
    predictions, labels = eval_preds
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge_l = sum(scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, labels))
    return {
        "rougeL": round(rouge_l / max(len(predictions), 1), 4),
        "bleu": round(corpus_bleu(predictions, [labels]).score / 100, 4),
    }


peft_configs_lite = List([
    RFLoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], bias="none"),
    RFLoraConfig(r=32, lora_alpha=64, lora_dropout=0.1,
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], bias="none"),
])


def make_config(learning_rate):
    return RFModelConfig(
        model_name=MODEL_NAME,
        peft_config=peft_configs_lite,
        training_args=RFSFTConfig(
            learning_rate=learning_rate,
            lr_scheduler_type="linear",
            per_device_train_batch_size=4,
            per_device_eval_batch_size=4,
            max_steps=128,
            gradient_accumulation_steps=1,
            logging_steps=2,
            eval_strategy="steps",
            eval_steps=8,
            fp16=True,
            gradient_checkpointing=False,
            max_length=256,
        ),
        model_type="causal_lm",
        model_kwargs={"device_map": "auto", "torch_dtype": "auto", "use_cache": False},
        formatting_func=sample_formatting_function,
        compute_metrics=sample_compute_metrics,
        # do_sample=False: greedy, deterministic ROUGE-L/BLEU; the cookbook's sampling keys only apply with True
        generation_config={"max_new_tokens": 48, "do_sample": False, "temperature": 0.8, "top_p": 0.9, "top_k": 30,
                           "repetition_penalty": 1.05},
    )


config_set_lite = List([make_config(1e-3), make_config(1e-4)])
config_group = RFGridSearch(configs=config_set_lite, trainer_type="SFT")


def sample_create_model(model_config):
    """Create model and tokenizer for a given configuration."""
    model_name = model_config["model_name"]
    model_kwargs = model_config["model_kwargs"]
    model = AutoModelForCausalLM.from_pretrained(model_name, **model_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    return (model, tokenizer)


if __name__ == "__main__":
    dataset = load_dataset("json", data_files=DATA_FILE)
    train_dataset = dataset["train"].select(range(128)).shuffle(seed=42)
    eval_dataset = dataset["train"].select(range(200, 224)).shuffle(seed=42)
    print(f"Training samples: {len(train_dataset)}")
    print(f"Evaluation samples: {len(eval_dataset)}")

    experiment = Experiment(experiment_name="exp1-chatqa-lite", mode="fit")
    experiment.run_fit(config_group, sample_create_model, train_dataset, eval_dataset, num_chunks=4, seed=42)
    print(experiment.get_runs_info())
    experiment.end()
