"""Each loss against a value worked out by hand on tiny tensors (the arithmetic is in comments)."""
import math

import pytest
import torch

from s3prl_dd.gan import losses as L


def close(value, expected, tol=1e-6):
    return abs(float(torch.as_tensor(value).detach()) - expected) < tol


def test_critic_adversarial_loss_eq1():
    # E[d(fake)] - E[d(real)] = mean(0.5, -0.5) - mean(1, 2, 3) = 0 - 2
    assert close(L.critic_adversarial_loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, -0.5])), -2.0)


def test_generator_adversarial_loss_eq2():
    assert close(L.generator_adversarial_loss(torch.tensor([1.0, 3.0])), -2.0)


def test_classification_loss():
    # row 0: p(y=0) = 1/2 -> ln 2; row 1: p(y=0) = 3/(3+1) -> -ln 0.75; mean of both
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) - math.log(0.75)) / 2
    assert close(L.classification_loss(logits, torch.tensor([0, 0])), expected)


def test_feature_matching_loss_eq3_averages_layers_and_detaches_real():
    # layer 1: |[1,2,3,4] - 1| = [0,1,2,3], mean 1.5; layer 2: |[0,0] - [2,-2]| mean 2 -> (1.5+2)/2
    r1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    f1 = torch.ones(2, 2, requires_grad=True)
    r2 = torch.zeros(1, 1, 2, requires_grad=True)
    f2 = torch.tensor([[[2.0, -2.0]]], requires_grad=True)
    loss = L.feature_matching_loss([r1, r2], [f1, f2])
    assert close(loss, 1.75)
    loss.backward()
    assert r1.grad is None and r2.grad is None
    # d/df of mean|r - f| for layer 1: -sign(r - f)/4, averaged over 2 layers -> /8
    assert torch.allclose(f1.grad, torch.tensor([[0.0, -1.0], [-1.0, -1.0]]) / 8)


def test_feature_matching_loss_rejects_mismatched_layers():
    with pytest.raises(ValueError):
        L.feature_matching_loss([torch.zeros(2, 3)], [torch.zeros(2, 4)])


def test_softmax_matching_loss_eq6():
    # row 0: p = (1/2, 1/2), q = softmax(ln 3, 0) = (3/4, 1/4):
    #   KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3); row 1: p = q -> 0; mean /2
    real = torch.tensor([[0.0, 0.0], [1.0, -2.0]], requires_grad=True)
    fake = torch.tensor([[math.log(3.0), 0.0], [1.0, -2.0]], requires_grad=True)
    loss = L.softmax_matching_loss(real, fake)
    assert close(loss, 0.5 * math.log(4.0 / 3.0) / 2)
    loss.backward()
    assert real.grad is None and fake.grad is not None


def test_softmax_matching_loss_zero_when_equal_and_finite_at_extremes():
    logits = torch.tensor([[3.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    assert close(L.softmax_matching_loss(logits, logits.clone()), 0.0)
    # q of the real class underflows to 0 in float32: a naive p*log(p/q) gives inf/NaN
    extreme = L.softmax_matching_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[-200.0, 200.0]]))
    # log q = (-400, 0): KL = 1/2 (ln 1/2 + 400) + 1/2 (ln 1/2 - 0) = 200 + ln 1/2
    assert torch.isfinite(extreme) and close(extreme, 200.0 + math.log(0.5), tol=1e-3)


def test_diversity_loss_eq7_and_tau_clip():
    # pair 0: mean|[0,0]-[1,3]| = 2, ||z1-z2|| = ||(0,0,3,4)|| = 5 -> 0.4
    # pair 1: mean|[1,1]-[1,1.5]| = 0.25, ||(0,0,0,1)|| = 1 -> 0.25
    fake1 = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]], requires_grad=True)
    fake2 = torch.tensor([[[1.0, 3.0]], [[1.0, 1.5]]])
    z1 = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    z2 = torch.tensor([[1.0, 0.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]])
    assert close(L.diversity_loss(fake1, fake2, z1, z2, tau=1.0), -(0.4 + 0.25) / 2)
    assert close(L.diversity_loss(fake1, fake2, z1, z2, tau=0.3), -(0.3 + 0.25) / 2)
    # every pair above τ: the loss is exactly -τ and gives the generator no gradient
    clipped = L.diversity_loss(fake1, fake2, z1, z2, tau=0.1)
    assert close(clipped, -0.1)
    clipped.backward()
    assert torch.count_nonzero(fake1.grad) == 0


def test_gradient_penalty_linear_critic_unit_norm_is_zero():
    w = torch.tensor([0.6, 0.0, 0.8])  # ||w|| = 1: the gradient of w.x is w everywhere
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    gp = L.gradient_penalty(lambda x: x @ w, real, fake, torch.Generator().manual_seed(0))
    assert close(gp, 0.0, tol=1e-6)


def test_gradient_penalty_value_and_gradient_to_critic():
    # critic w.x with w = (2, 0): ||grad|| = 2 -> (2-1)^2 = 1; d/dw (||w||-1)^2 = 2(||w||-1) w/||w|| = (2, 0)
    w = torch.tensor([2.0, 0.0], requires_grad=True)
    gp = L.gradient_penalty(lambda x: x @ w, torch.randn(3, 2), torch.randn(3, 2))
    assert close(gp, 1.0, tol=1e-5)
    gp.backward()
    assert torch.allclose(w.grad, torch.tensor([2.0, 0.0]), atol=1e-5)


def test_gradient_penalty_nonlinear_conditional_and_deterministic():
    # critic 0.5*||x||^2 * c(y): gradient c(y)*x̂; with real = fake, x̂ = x whatever α is.
    # sample 0: x = (3, 4), c = 1 -> norm 5 -> 16; sample 1: x = (0.3, 0.4), c = 2 -> norm 1 -> 0
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    y = torch.tensor([0, 1])
    scale = torch.tensor([1.0, 2.0])

    def critic(h, labels):
        return 0.5 * h.pow(2).sum(1) * scale[labels]

    assert close(L.gradient_penalty(lambda h: critic(h, y), x, x.clone()), 8.0, tol=1e-4)
    real, fake = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    quad = lambda h: h.pow(2).sum((1, 2))  # noqa: E731
    a = L.gradient_penalty(quad, real, fake, torch.Generator().manual_seed(7))
    b = L.gradient_penalty(quad, real, fake, torch.Generator().manual_seed(7))
    c = L.gradient_penalty(quad, real, fake, torch.Generator().manual_seed(8))
    assert a == b and a != c


def test_critic_loss_eq4_weights_and_logs():
    lam = {"lambda_gp": 10.0, "lambda_cls_real": 0.5, "lambda_cls_fake": 0.25}
    t = lambda v: torch.tensor(v)  # noqa: E731
    total, logged = L.critic_loss(t(1.0), t(2.0), t(3.0), t(4.0), lam)
    assert close(total, 1 + 10 * 2 + 0.5 * 3 + 0.25 * 4)  # 23.5
    assert set(logged) == {"adv", "gp", "cls_real", "cls_fake", "total"}
    assert close(logged["gp"], 2.0)  # logged terms are unweighted
    # the critic's own weight on CE(fake), when set, replaces λ3 in Eq. 4 only
    total, _ = L.critic_loss(t(1.0), t(2.0), t(3.0), t(4.0), {**lam, "lambda_cls_fake_critic": 0.0})
    assert close(total, 22.5)


def test_generator_loss_eq5_and_eq8():
    lam = {"lambda_cls_fake": 1.0, "lambda_fm": 2.0, "lambda_div": 10.0, "lambda_sml": 4.0}
    t = lambda v: torch.tensor(v)  # noqa: E731
    total, logged = L.generator_loss(t(1.0), t(2.0), t(3.0), lam, div=t(-0.1), sml=t(0.5))
    assert close(total, 1 + 2 + 2 * 3 + 10 * -0.1 + 4 * 0.5)  # 10.0 (Eq. 8)
    assert set(logged) == {"adv", "cls_fake", "fm", "div", "sml", "total"}
    base = dict(lam, lambda_div=0.0, lambda_sml=0.0)
    total, logged = L.generator_loss(t(1.0), t(2.0), t(3.0), base)
    assert close(total, 9.0) and "div" not in logged  # Eq. 5: the Table 2 baseline


def test_combinators_refuse_a_weighted_term_that_is_missing():
    lam = {"lambda_gp": 10.0, "lambda_cls_real": 1.0, "lambda_cls_fake": 0.0}
    with pytest.raises(ValueError, match="gp"):
        L.critic_loss(torch.tensor(0.0), None, torch.tensor(0.0), None, lam)


def _mm(real, fake, y):
    return L.moment_matching_loss(fake, y, *L.class_moments(real.mean(1), y, int(y.max()) + 1))


def _mm_as_first_written(real, fake, y):
    """L_MM against the real batch as the runs in results/emodb_mm* computed it: the refactor
    into targets + loss must not change a bit of it."""
    m_real, m_fake = real.mean(1).detach().float(), fake.mean(1).float()
    scale = m_real.var(0, unbiased=False).mean().clamp_min(1e-8)
    total = m_fake.new_zeros(())
    for c in torch.unique(y):
        r, f = m_real[y == c], m_fake[y == c]
        gap = (f.mean(0) - r.mean(0)).pow(2).mean()
        if len(r) > 1:
            gap = gap + (f.std(0) - r.std(0)).pow(2).mean()
        total = total + gap * (len(r) / len(y))
    return total / scale


def test_moment_matching_loss_matches_class_means_and_spreads_of_time_means():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    real = torch.randn(8, 6, 5, generator=g) + 3.0 * y.view(-1, 1, 1)
    assert close(_mm(real, real.clone(), y), 0.0)
    # a shift of every class's time means by s adds s² to each class's gap (weights sum to 1)
    s = 0.5
    scale = real.mean(1).var(0, unbiased=False).mean()
    assert close(_mm(real, real + s, y), s * s / scale)
    # frames reshuffled in time keep every time mean: nothing to match
    assert close(_mm(real, real.flip(1), y), 0.0)
    # a collapsed generator (each class its real class mean) pays the missing spread
    collapsed = real.mean(1).clone()
    for c in (0, 1):
        collapsed[y == c] = collapsed[y == c].mean(0)
    spread = sum((real.mean(1)[y == c].std(0).pow(2).mean() * (y == c).float().mean()) for c in (0, 1))
    assert close(_mm(real, collapsed, y), spread / scale)
    # units do not matter, and the gradient reaches the generated batch only
    fake = (real + torch.randn(real.shape, generator=g)).requires_grad_(True)
    r = real.clone().requires_grad_(True)
    value = _mm(r, fake, y)
    assert close(_mm(10 * real, 10 * fake.detach(), y), value.detach())
    value.backward()
    assert fake.grad.abs().sum() > 0 and r.grad is None
    # bit for bit what the first runs computed, a lone class (no spread term) included
    y1 = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])
    assert torch.equal(_mm(real, fake.detach(), y1), _mm_as_first_written(real, fake.detach(), y1))


def test_moment_matching_loss_refuses_unpaired_batches_and_joins_eq8_only_when_weighted():
    mean = std = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="paired"):
        L.moment_matching_loss(torch.zeros(3, 3, 2), torch.zeros(4, dtype=torch.long), mean, std, 1.0)
    with pytest.raises(ValueError, match="width"):
        L.moment_matching_loss(torch.zeros(4, 3, 5), torch.zeros(4, dtype=torch.long), mean, std, 1.0)
    lam = {"lambda_cls_fake": 1.0, "lambda_fm": 1.0}
    t = lambda v: torch.tensor(v)  # noqa: E731
    total, logged = L.generator_loss(t(1.0), t(2.0), t(3.0), dict(lam, lambda_mm=2.0), mm=t(0.25))
    assert close(total, 6.5) and "mm" in logged
    total, logged = L.generator_loss(t(1.0), t(2.0), t(3.0), lam)
    assert close(total, 6.0) and "mm" not in logged
