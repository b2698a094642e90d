"""The ``synth:`` section of ``method: self_align`` (SELF-ALIGN, Sun et al. 2023). Every number of the four
stages is a field here; field help feeds docs/recipes.md, and docs/methods/self-align.md says where each
default comes from (the paper's settings unless it says otherwise)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sao.recipe import Section
from sao.train.config import LoraSection, TrainConfig

REFUSAL_OPENERS = ["I'm sorry", "I am sorry", "Sorry", "I apologize", "I apologise", "As an AI"]
# Self-Instruct's filter of tasks a text-only model cannot do (Wang et al. 2022, section 2.4).
BLACKLIST = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
             "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]  # fmt: skip


class TurnSection(Section):
    """The plain-text turn format of every prompt the method writes (the model reads them as raw text)."""

    user: str = Field("### User", description="The label line that opens a user turn.")
    assistant: str = Field("### {name}", description="The label line of an answer turn; {name} is synth.name.")
    thoughts: str = Field(
        "### {name} (internal thoughts)",
        description="The label line of the assistant's internal thoughts, which come before its answer.",
    )
    chat_template: Literal["model", "text"] = Field(
        "model",
        description="Chat template of the training rows and the trained model: 'model' keeps the starting "
        "model's own (a chat model); 'text' builds one from this turn format (system prompt, then user and "
        "answer turns, each answer closed by EOS) and saves it with every model the method trains, so that "
        "`sao chat` and `sao eval` serve a base model that had none.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> TurnSection:
        labels = [self.user, self.assistant, self.thoughts]
        if any(not label.strip() or "\n" in label for label in labels):
            raise ValueError("turn labels must be one non-empty line each")
        if len(set(labels)) != 3:
            raise ValueError("the user, assistant and thoughts labels must differ")
        return self


class TopicSection(Section):
    per_type: int = Field(10, ge=1, description="Topics the model is asked for in each brainstorm (paper: 10).")
    rounds: int = Field(3, ge=1, description="Brainstorms per question type; each sees the topics so far.")
    shown: int = Field(5, ge=1, description="Existing topics shown in a brainstorm, at most (paper: 5).")
    max_words: int = Field(3, ge=1, description="A topic is a capitalised noun phrase of at most this many words.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (paper: 1.0).")
    top_p: float = Field(0.98, gt=0, le=1, description="Nucleus mass (paper: 0.98).")
    max_new_tokens: int = Field(128, ge=8, description="Token budget of one brainstorm.")
    seed: int = Field(0, description="Base seed of the brainstorms and of which topics they are shown.")


class QuestionSection(Section):
    hints_per_prompt: int = Field(
        1,
        ge=1,
        description="(type, topic) hints asked for in one request; each question the model writes is matched "
        "back to its hint by type and topic. SmolLM2-135M manages one; a large base model several.",
    )
    examples: int = Field(3, ge=1, description="Seed questions (of other types) shown as examples in a request.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (paper: 1.0).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass (paper: 0.95).")
    max_new_tokens: int = Field(96, ge=8, description="Token budget per hint in a request.")
    min_words: int = Field(4, ge=1, description="Shorter questions are dropped as too_short.")
    max_words: int = Field(150, ge=1, description="Longer questions are dropped as too_long.")
    dedup_threshold: float = Field(
        0.7, gt=0, le=1, description="Word 3-gram Jaccard at or above which two questions are near-duplicates."
    )


class SelfInstructSection(Section):
    requests: int = Field(
        32, ge=0, description="Plain self-instruct requests (each yields at most one new task); 0: none."
    )
    examples: int = Field(5, ge=1, description="Seed tasks shown per request (paper: 5).")
    min_words: int = Field(4, ge=1, description="Shorter tasks are dropped as too_short (Self-Instruct: 3 < n).")
    max_words: int = Field(150, ge=1, description="Longer tasks are dropped as too_long (Self-Instruct: 150).")
    blacklist: list[str] = Field(
        default_factory=lambda: list(BLACKLIST),
        description="A task containing any of these words (case-insensitive, whole words) is dropped: a text "
        "model cannot do it (Self-Instruct's list).",
    )
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass.")
    max_new_tokens: int = Field(96, ge=8, description="Token budget of one new task.")


class PromptMixSection(Section):
    total: int = Field(64, ge=1, description="Prompts kept for the answer stages, at most.")
    tgrt_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of them taken from topic-guided red-teaming questions, the rest from plain "
        "self-instruct (either side fills up when the other has too few).",
    )
    seed: int = Field(0, description="Seed of the draw when a side has more prompts than its share.")


class AnswerSection(Section):
    temperature: float = Field(0.5, ge=0, description="Sampling temperature (paper: 0.5).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass (paper: 0.95).")
    max_new_tokens: int = Field(256, ge=8, description="Token budget of the thoughts and the answer (paper: 256).")
    min_chars: int = Field(
        160, ge=1, description="An answer shorter than this, cut at the next turn, is dropped (paper: 160)."
    )
    refusal_openers: list[str] = Field(
        default_factory=lambda: list(REFUSAL_OPENERS),
        description="An answer that opens with one of these (case-insensitive) is dropped as a refusal.",
    )
    logit_bias: dict[str, float] = Field(
        default_factory=lambda: {"Sorry": -100.0},
        description="Bias added to the first token of each text at every step (paper: -100 on 'Sorry'); the "
        "engine must support logit_bias ({} needs nothing).",
    )
    copy_markers: int = Field(
        2,
        ge=1,
        description="An answer holding this many of an exemplar's distinctive markers (not in the query) copies "
        "the exemplar and is dropped.",
    )
    seed: int = Field(0, description="Base seed; each prompt's seed derives from it and the prompt's id.")


class EngraveLora(LoraSection):
    enabled: bool = Field(True, description="Train LoRA adapters (paper: yes); false trains every weight.")
    r: int = Field(16, ge=1, description="LoRA rank (paper: 16).")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (paper: 16).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input (paper: 0.05).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Modules adapted (paper: the attention projections; names of Llama-style models).",
    )


class EngraveTrainConfig(TrainConfig):
    """The fields of ``train:``, with the paper's engraving settings as defaults."""

    trainer: Literal["sft"] = Field("sft", description="Engraving is SFT, with the loss on the answer only.")
    learning_rate: float = Field(4e-4, gt=0, description="Peak learning rate (paper: 4e-4).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of the steps spent warming up.")
    max_length: int = Field(512, ge=16, description="Short prompt + answer tokens (paper's cutoff: 512).")
    lora: EngraveLora = Field(default_factory=EngraveLora)


class EngraveSection(Section):
    """Stage 3: SFT of the starting model on the principle-driven answers under the short prompt alone."""

    held_out: int = Field(
        4,
        ge=0,
        description="Kept answers held back from both trainings, to measure log p(answer | short prompt) "
        "before and after engraving and the answer length before and after verbose cloning.",
    )
    train: EngraveTrainConfig = Field(
        default_factory=EngraveTrainConfig,
        description="The engraving's training, with the fields of `train:` (paper: LoRA r 16, alpha 16, "
        "dropout 0.05 on the attention projections, lr 4e-4, 1 epoch, cutoff 512).",
    )


class VerboseSection(Section):
    """Stage 4: the engraved model answers every prompt under the verbose prompt; its answers train the start."""

    temperature: float = Field(0.3, ge=0, description="Sampling temperature (paper: 0.3).")
    top_p: float = Field(0.7, gt=0, le=1, description="Nucleus mass (paper: 0.7).")
    max_new_tokens: int = Field(512, ge=8, description="Token budget of one answer (paper: 512).")
    min_chars: int = Field(128, ge=1, description="Shorter answers, cut at the next turn, are dropped (paper: 128).")
    frequency_penalty: float = Field(
        0.2, ge=0, description="Penalty per earlier occurrence of the n-gram a token would complete."
    )
    presence_penalty: float = Field(0.0, ge=0, description="Penalty once the n-gram has occurred at all.")
    penalty_ngram: int = Field(
        1,
        ge=1,
        description="n of the penalties' n-grams (1: the tokens themselves, which every engine does; above 1 the "
        "engine must support ngram_penalty).",
    )
    copy_markers: int = Field(2, ge=1, description="Markers of the verbose exemplar that make an answer a copy.")
    length_tokens: int = Field(
        384, ge=8, description="Token budget of the greedy answers that measure length before and after."
    )
    seed: int = Field(0, description="Base seed; each prompt's seed derives from it and the prompt's id.")


class SelfAlignConfig(Section):
    model: str = Field(
        "smollm2-135m", description="Set by `sao run` to the iteration's starting model; `sao synth`: --model."
    )
    name: str = Field("Sage", description="The assistant's name in every prompt and in the short system prompt.")
    identity: str = Field(
        "I am {name}, an assistant who aims to be helpful, honest and harmless.",
        description="The fixed self-identification sentence each answer turn's internal thoughts start with.",
    )
    system_prompt: str = Field(
        "You are {name}, a helpful, honest and harmless assistant. Answer the user's question.",
        description="The short prompt that replaces principles, exemplars and thoughts in every training row.",
    )
    principles: str | None = Field(
        None, description="YAML list of {name, text} rules (default: sao's 16, data/principles.yaml)."
    )
    exemplars: str | None = Field(
        None,
        description="YAML list of {user, thoughts, answer, markers} worked exemplars (default: sao's 5). "
        "markers: words that only a copy of the exemplar would contain.",
    )
    question_types: str | None = Field(
        None,
        description="YAML list of {name, description, seed_topic, seed_question} red-teaming question types "
        "(default: sao's 20).",
    )
    seed_tasks: str | None = Field(
        None,
        description="JSONL of {id, instruction} seed tasks for plain self-instruct (default: the 175 "
        "Self-Instruct seeds, Apache-2.0).",
    )
    verbose_prompt: str | None = Field(
        None, description="YAML {description, exemplar: {user, answer, markers}} of verbose cloning (default: sao's)."
    )
    turns: TurnSection = Field(default_factory=TurnSection)
    topics: TopicSection = Field(default_factory=TopicSection)
    questions: QuestionSection = Field(default_factory=QuestionSection)
    self_instruct: SelfInstructSection = Field(default_factory=SelfInstructSection)
    prompts: PromptMixSection = Field(default_factory=PromptMixSection)
    answers: AnswerSection = Field(default_factory=AnswerSection)
    engrave: EngraveSection = Field(default_factory=EngraveSection)
    verbose: VerboseSection = Field(default_factory=VerboseSection)
    seed: int = Field(0, description="Seed of the seed-task draws and the held-out split.")
