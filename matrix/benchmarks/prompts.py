"""Prompt texts several official evaluations share, defined once: the benchmark modules ask with them and
the synthetic world (`matrix.world.language`) phrases its files and training data with the same strings.

- LLaVA's answer-format suffixes, appended to a question by its eval question files and its training
  data (`llava_v1_5_mix665k.json`): short answer, multiple choice, and MMBench-CN's Chinese one;
- MME's instruction, ending each of its questions (`convert_answer_to_mme.py` swaps it for LLaVA's
  short-answer suffix and back);
- the detailed-description request (CHAIR's sample, HA-DPO's SHR, LLaVA-Bench's `detail` questions).
"""
from __future__ import annotations

SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."
MULTIPLE_CHOICE_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
MULTIPLE_CHOICE_SUFFIX_CN = "\n请直接回答选项字母。"
YES_NO_SUFFIX = " Please answer yes or no."
DETAIL_PROMPT = "Describe this image in detail."
