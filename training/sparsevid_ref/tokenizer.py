"""Sentencepiece tokenizer with the umT5 special ids (pad 0, eos 1, unk 2, no BOS)."""
import html
import io
import re

import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


def clean(text):
    """Wan's 'whitespace' cleaning without ftfy: unescape twice, strip, collapse runs."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def train(sentences, vocab_size, model_path, model_type="bpe"):
    """Trains a sentencepiece model (BPE: whole words of the small prompt language) on `sentences`."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
        minloglevel=2)
    with open(model_path, "wb") as f:
        f.write(model.getvalue())


class Tokenizer:
    def __init__(self, model_path):
        self.sp = spm.SentencePieceProcessor(model_file=model_path)

    @property
    def vocab_size(self):
        return self.sp.get_piece_size()

    def encode(self, text, max_len=None):
        """Valid ids: the pieces of the cleaned text, then EOS (truncated like HF)."""
        ids = self.sp.encode(clean(text)) + [EOS_ID]
        if max_len is not None and len(ids) > max_len:
            ids = ids[:max_len - 1] + [EOS_ID]
        return ids
