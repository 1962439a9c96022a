"""pixelrnn_net.py - the Row LSTM of PixelRNN (van den Oord et al. 2016,
"Pixel Recurrent Neural Networks") for binary images: the model definition
the trainer, the fixture generator and gmexport.save_pixelrnn share.

Each layer is an LSTM that runs down the image one row at a time and
computes a whole row at once. Its four gates (input, forget, output,
candidate; 4h channels) at row i are

    input_to_state(x)[i] + state_to_state(h[i - 1])

where input_to_state is a 1 x k_in convolution along row i of the layer's
input, masked so that column j sees the columns left of j (mask A, the
first layer, whose input is the image) or up to j (mask B, later layers,
whose input already depends on earlier pixels only), and state_to_state a
k_state-wide convolution over the previous row's hidden state (h[-1] = 0,
c[-1] = 0). Then c[i] = sigmoid(f) c[i - 1] + sigmoid(i) tanh(g) and
h[i] = sigmoid(o) tanh(c[i]). Layers after the first are residual (their
input plus their h). The output is relu -> 1x1 (head channels) -> relu ->
1x1 to one Bernoulli logit per pixel. With num_classes, an embedding of the
label adds a per-layer bias to the gates (class-conditional).

Causality: h[i] at column j depends on the rows above (through the state,
a cone that widens by k_state // 2 columns a row) and on row i left of j
(through the masks), never on pixel (i, j) or later ones.
"""
import torch
from torch import nn
import torch.nn.functional as F

from pixelcnn_net import MaskedConv2d, horizontal_mask


class RowLSTMLayer(nn.Module):
    def __init__(self, cin, hidden, k_in, k_state, first, num_classes=0):
        super().__init__()
        self.hidden, self.k_state, self.first = hidden, k_state, first
        self.input_to_state = MaskedConv2d(cin, 4 * hidden, 1, k_in, horizontal_mask(k_in, first))
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, k_state, padding=k_state // 2, bias=False)
        self.cond = nn.Embedding(num_classes, 4 * hidden) if num_classes else None

    def forward(self, x, label=None):
        """x: [B, cin, H, W] -> [B, hidden, H, W]."""
        B, _, _, W = x.shape
        pre = self.input_to_state(x)
        if self.cond is not None:
            pre = pre + self.cond(label)[:, :, None, None]
        # Rows channels-last, [B * W, 4h]: the state-to-state convolution is
        # then one matrix product of the previous row's k_state shifted
        # copies, [B * W, k_state * h], with the kernel, 3x faster than
        # conv1d on one thread.
        k, hid = self.k_state, self.hidden
        kernel = self.state_to_state.weight.permute(2, 1, 0).reshape(k * hid, 4 * hid)
        h = x.new_zeros(B, W + k - 1, hid)
        c = x.new_zeros(B * W, hid)
        rows = []
        for pre_i in pre.permute(2, 0, 3, 1).unbind(0):  # one backward op for all rows
            shifted = torch.cat([h[:, t:t + W] for t in range(k)], dim=2).reshape(B * W, k * hid)
            gi, gf, go, gg = torch.chunk(pre_i.reshape(B * W, 4 * hid) + shifted @ kernel, 4, dim=1)
            c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
            out = (torch.sigmoid(go) * torch.tanh(c)).reshape(B, W, hid)
            rows.append(out)
            h = F.pad(out, (0, 0, k // 2, k // 2))
        out = torch.stack(rows, dim=1).permute(0, 3, 1, 2)
        return out if self.first else x + out


class RowLSTM(nn.Module):
    """x: [B, 1, H, W] in {0, 1} (and label [B] int64 when num_classes > 0)
    -> Bernoulli logits [B, 1, H, W]."""

    def __init__(self, hidden=64, layers=2, k_in=3, k_state=3, head=64, num_classes=0):
        super().__init__()
        self.hidden, self.k_in, self.k_state, self.head = hidden, k_in, k_state, head
        self.num_classes = num_classes
        self.layers = nn.ModuleList(
            [RowLSTMLayer(1 if i == 0 else hidden, hidden, k_in, k_state, i == 0, num_classes)
             for i in range(layers)])
        self.out1 = nn.Conv2d(hidden, head, 1)
        self.out2 = nn.Conv2d(head, 1, 1)

    def forward(self, x, label=None):
        h = x
        for layer in self.layers:
            h = layer(h, label)
        return self.out2(F.relu(self.out1(F.relu(h))))


def nll(logits, x):
    """Negative log-likelihood in nats per image."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
