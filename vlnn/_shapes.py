"""Output-size formulas shared by conv, convt and pool (MatConvNet's)."""


def conv_output_size(fname, h, w, fh, fw, stride, pad, dilate=(1, 1),
                     data_name="x", filter_name="w"):
    """``HO = floor((H + PT + PB - EH) / SY) + 1`` with the dilated extent
    ``EH = (FH - 1) * DY + 1`` (likewise for the width).

    Returns ``(ho, wo, eh, ew)``; a filter extent larger than the padded
    input is a ``ValueError`` naming both shapes."""
    pt, pb, pl, pr = pad
    eh = (fh - 1) * dilate[0] + 1
    ew = (fw - 1) * dilate[1] + 1
    if h + pt + pb < eh or w + pl + pr < ew:
        raise ValueError(
            f"{fname}: the {filter_name} extent {eh} x {ew} (size {fh} x {fw}, dilate "
            f"{list(dilate)}) is larger than the padded {data_name} "
            f"{h + pt + pb} x {w + pl + pr} (size {h} x {w}, pad {list(pad)})")
    ho = (h + pt + pb - eh) // stride[0] + 1
    wo = (w + pl + pr - ew) // stride[1] + 1
    return ho, wo, eh, ew


def convt_output_size(fname, h, w, fh, fw, upsample, crop):
    """``YH = (H - 1) * UY + FH - CT - CB`` (likewise for the width)."""
    ct, cb, cl, cr = crop
    yh = (h - 1) * upsample[0] + fh - ct - cb
    yw = (w - 1) * upsample[1] + fw - cl - cr
    if yh < 1 or yw < 1:
        raise ValueError(
            f"{fname}: the output would be empty ({yh} x {yw}) for input {h} x {w}, "
            f"filter {fh} x {fw}, upsample {list(upsample)} and crop {list(crop)}")
    return yh, yw
