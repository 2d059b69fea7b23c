"""The causal-LM loss on answer tokens, computed without materialising the logits' gradient.

With the Qwen vocabulary (151,936 words) the output projection and the cross-entropy are most of
a training step of a small model: on the tiny profile's CPU recipe, 90% of a step was the
``lm_head`` matmul, ``log_softmax`` forward and backward, and zero-filling the logits' gradient
(profiled in ``bench.train_step``). Two things make that cheaper:

1. **Only labelled positions.** The logits are needed at the positions whose next token is
   supervised, exactly those (row, position) pairs, not the union of answer spans over the batch.
2. **A fused linear cross-entropy** (:func:`linear_cross_entropy`). For each chunk of rows it
   computes the logits, their log-softmax and the loss, and, while the logits are at hand, the
   gradient of the loss with respect to the hidden states, ``(softmax - onehot) @ W``, and with
   respect to ``W`` when ``W`` trains. The backward pass only scales that stored gradient. No
   ``(rows, vocabulary)`` tensor outlives its chunk: memory is ``chunk x vocabulary`` instead of
   three ``rows x vocabulary`` tensors (logits, log-probabilities, their gradient). This is the
   idea of Liger-Kernel's ``FusedLinearCrossEntropy`` and Apple's cut-cross-entropy, written in
   plain torch so it runs on the CPU as well as on a GPU.

The loss is the same function as ``F.cross_entropy(hidden @ W.T, targets)`` (computed in float32);
float rounding differs in the last bits (the test compares both to 1e-5).
"""
from __future__ import annotations

import torch

#: Rows per chunk are chosen so that one chunk's logits hold about this many floats (20 MB, 32 rows
#: of the Qwen vocabulary, within the 32 MB L3 cache of the 2-core CPU this was measured on): one
#: forward and backward of 112 rows took 88 / 71 / 72 ms with chunks of 16 / 32 / 64 rows, of 400 rows
#: (CoT targets) 289 / 225 / 299 ms, and 251 ms in one chunk. Rows are independent in exact
#: arithmetic, but the BLAS kernels block a matmul by its shape, so another chunk size rounds
#: differently in the last bits, and a training run, chaotic at that scale, ends elsewhere: the seed
#: sweeps under results/bench ran with 16-row chunks, the notebooks with 32 (README, "Measured figures").
CHUNK_ELEMENTS = 5_000_000


class _LinearCrossEntropy(torch.autograd.Function):
    """``losses[i] = logsumexp(h[i] @ W.T) - (h[i] @ W.T)[t[i]]`` with gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        n = hidden.shape[0]
        w = weight.float()
        losses = torch.empty(n, dtype=torch.float32, device=hidden.device)
        want_h = ctx.needs_input_grad[0]
        want_w = ctx.needs_input_grad[1]
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if want_h else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=hidden.device) if want_w else None
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            h = hidden[start:stop].float()
            t = targets[start:stop]
            logp = torch.log_softmax(h @ w.T, dim=-1)           # (rows, vocabulary)
            losses[start:stop] = -logp.gather(1, t[:, None]).squeeze(1)
            if want_h or want_w:
                probs = logp.exp_()                               # softmax, in place
                probs[torch.arange(stop - start, device=probs.device), t] -= 1.0
                if want_h:
                    grad_h[start:stop] = probs @ w
                if want_w:
                    grad_w.addmm_(probs.T, h)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_losses.float()
        gh = (grad_h * scale[:, None]).to(ctx.dtypes[0]) if grad_h is not None else None
        # the weight's gradient was summed over rows in forward: exact for a uniform scale (what a
        # sum or a mean over tokens gives); a per-row scale would need the rows again, so it is refused
        gw = None
        if grad_w is not None:
            if not torch.allclose(scale, scale[:1].expand_as(scale)):
                raise RuntimeError("linear_cross_entropy: a trainable weight needs a uniform scale on the losses")
            gw = (grad_w * scale[0]).to(ctx.dtypes[1])
        return gh, gw, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int | None = None) -> torch.Tensor:
    """Per-row cross-entropy of ``hidden @ weight.T`` against ``targets`` (float32, shape ``(rows,)``).

    ``hidden``: ``(rows, width)``; ``weight``: ``(vocabulary, width)`` (an ``nn.Linear`` weight,
    no bias); ``targets``: ``(rows,)`` token ids, all valid (select the labelled rows first).
    Gradients flow to ``hidden`` (any per-row scale) and to ``weight`` when it requires grad
    (a uniform scale, as a sum or mean of the losses gives)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"shapes do not fit: hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} for {hidden.shape[0]} rows")
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, targets.to(hidden.device), int(chunk))


def fused_parts(model):
    """``(body, head)`` when ``model`` (or the model under a peft wrapper) is a Qwen2-VL-style
    ``...ForConditionalGeneration`` whose logits are ``head(body(...).last_hidden_state)`` with a
    plain bias-free linear head; ``None`` otherwise (the caller then uses the stock forward)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in ("qwen2_vl", "qwen2_5_vl"):
        return None
    body = getattr(base, "model", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    if type(head) is not torch.nn.Linear:  # a LoRA- or 4-bit-wrapped head: not a plain matmul
        return None
    return body, head
