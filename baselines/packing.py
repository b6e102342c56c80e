"""Variable-length batches for the drop-in modules: a ``PackedSequence`` as a padded batch with lengths.

Every layer of a drop-in module runs on a padded time-major batch ``x (T, B, F)``, T the longest
sequence, with ``lengths (B,)``: row b is a sequence of ``lengths[b]`` steps followed by padding.
:func:`unpack` turns a ``PackedSequence`` into that form and :class:`PackedLayout` turns outputs back.
Rows stay in the PackedSequence's own order (decreasing length), so the initial and final states are
permuted with its ``sorted_indices`` / ``unsorted_indices``, as ``torch.nn`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence


@dataclass(frozen=True)
class PackedLayout:
    """Where the elements of a ``PackedSequence`` sit in its padded batch ``(T, B, F)``.

    ``time_index``/``batch_index`` ``(N,)`` (N = sum of the lengths, in the packed, time-major
    order) and ``lengths (B,)`` are int64 tensors on the data's device; the other fields are the
    PackedSequence's own.
    """

    time_index: torch.Tensor
    batch_index: torch.Tensor
    lengths: torch.Tensor
    batch_sizes: torch.Tensor
    sorted_indices: torch.Tensor | None
    unsorted_indices: torch.Tensor | None

    @property
    def steps(self) -> int:
        return self.batch_sizes.numel()

    @property
    def full_length(self) -> bool:
        """Whether every row runs all T steps (then the lengths change nothing)."""
        return bool(self.batch_sizes[-1] == self.batch_sizes[0])

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """Packed data ``(N, F)`` of a padded batch ``(T, B, F)``."""
        return padded[self.time_index, self.batch_index]

    def scatter(self, data: torch.Tensor) -> torch.Tensor:
        """The padded batch ``(T, B, F)`` of packed data ``(N, F)``, zero past each row's end."""
        padded = data.new_zeros(self.steps, int(self.batch_sizes[0]), data.shape[-1])
        return padded.index_put((self.time_index, self.batch_index), data)

    def pack(self, padded: torch.Tensor) -> PackedSequence:
        """A padded output ``(T, B, F)`` as a PackedSequence with the input's batch sizes and order."""
        return PackedSequence(self.gather(padded), self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def to_sorted(self, state: torch.Tensor) -> torch.Tensor:
        """A state ``(L, B, H)`` given in the caller's batch order, in the packed (sorted) order."""
        return state if self.sorted_indices is None else state.index_select(1, self.sorted_indices)

    def to_caller_order(self, state: torch.Tensor) -> torch.Tensor:
        """A state ``(L, B, H)`` in the packed order, back in the caller's batch order."""
        return state if self.unsorted_indices is None else state.index_select(1, self.unsorted_indices)


def unpack(sequence: PackedSequence) -> tuple[torch.Tensor, PackedLayout]:
    """``(padded (T, B, F), layout)`` of a PackedSequence; padding is zero."""
    batch_sizes = sequence.batch_sizes
    running = torch.arange(int(batch_sizes[0])) < batch_sizes[:, None]  # (T, B): row b still running at step t
    time_index, batch_index = running.nonzero(as_tuple=True)  # row-major: the packed order
    device = sequence.data.device
    layout = PackedLayout(time_index.to(device), batch_index.to(device), running.sum(0).to(device), batch_sizes,
                          sequence.sorted_indices, sequence.unsorted_indices)
    return layout.scatter(sequence.data), layout


def reverse_sequences(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each row of a padded batch ``x (T, B, F)`` with its first ``lengths[b]`` steps in reverse
    order and its padding left in place (all T steps reversed when ``lengths`` is None).

    Applying it twice gives ``x`` back: it maps a layer's input to the order in which the backward
    direction reads it, and that direction's outputs back to time order.
    """
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0], device=x.device)[:, None]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(0, index[:, :, None].expand_as(x))
