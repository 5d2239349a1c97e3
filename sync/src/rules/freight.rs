//! Who pays freight (domain.md §4, handbook H3 §4.5.4, H2 §6.3.1): the
//! rules are tried in order and the first that applies decides; the
//! decision names the rule.

use serde::{Deserialize, Serialize};

/// Who bears a freight leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payer {
    /// The retailer.
    Seller,
    /// The customer.
    Customer,
    /// The store that picks the goods up.
    Store,
    /// The customer ships first; head office decides after receipt.
    PendingHeadOffice,
}

/// What the person deciding knows about the case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreightFacts {
    /// An explicit agreement on freight, and who it names.
    pub agreed_payer: Option<Payer>,
    /// The agreement would cut the customer's statutory rights.
    pub agreement_cuts_statutory_rights: bool,
    /// Quality problem, not as described, wrong item, late dispatch,
    /// undisclosed flaw, ambiguous freight terms, missing or wrong return
    /// address, or a refused return.
    pub seller_at_fault: bool,
    /// The customer caused the damage.
    pub customer_caused_damage: bool,
    /// The customer returns for their own reasons.
    pub customer_own_reason: bool,
    /// The item shipped free.
    pub free_shipping: bool,
    /// The return qualifies for the 7-day no-reason return.
    pub no_reason_eligible: bool,
    /// The agreement says nothing about freight.
    pub agreement_silent: bool,
    /// Customer and store disagree on who pays.
    pub payer_disputed: bool,
    /// The store picks the goods up after delivery damage.
    pub pickup_after_delivery_damage: bool,
}

/// The decision, per leg, with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreightDecision {
    /// Payer of the outbound (delivery) leg.
    pub outbound: Payer,
    /// Payer of the return leg.
    pub return_leg: Payer,
    /// Rule number, 1-8, in the order of domain.md §4.
    pub rule: u8,
    /// The rule in words.
    pub rule_text: String,
}

fn decision(outbound: Payer, return_leg: Payer, rule: u8, text: &str) -> FreightDecision {
    FreightDecision {
        outbound,
        return_leg,
        rule,
        rule_text: text.to_string(),
    }
}

/// Applies the eight rules in order. `Err` when no rule applies (the facts
/// are not enough to decide), naming what is missing.
pub fn decide(f: &FreightFacts) -> Result<FreightDecision, String> {
    use Payer::*;
    if let Some(p) = f.agreed_payer {
        if !f.agreement_cuts_statutory_rights {
            return Ok(decision(p, p, 1, "an explicit agreement decides"));
        }
    }
    if f.seller_at_fault {
        return Ok(decision(
            Seller,
            Seller,
            2,
            "seller at fault: seller pays all legs",
        ));
    }
    if f.customer_caused_damage {
        return Ok(decision(
            Customer,
            Customer,
            3,
            "customer caused the damage: customer pays",
        ));
    }
    if f.customer_own_reason && f.free_shipping {
        return Ok(if f.no_reason_eligible {
            decision(
                Seller,
                Customer,
                4,
                "customer's own reason, free shipping, 7-day no-reason: seller pays outbound, customer pays return",
            )
        } else {
            decision(
                Customer,
                Customer,
                5,
                "customer's own reason, free shipping, not eligible for no-reason return: customer pays both legs",
            )
        });
    }
    if f.agreement_silent {
        return Ok(decision(
            Seller,
            Seller,
            6,
            "agreement silent on freight: seller pays return freight at the original carrier mode",
        ));
    }
    if f.payer_disputed {
        return Ok(decision(
            PendingHeadOffice,
            PendingHeadOffice,
            7,
            "payer disputed: customer ships first, head office decides after receipt",
        ));
    }
    if f.pickup_after_delivery_damage {
        return Ok(decision(
            Store,
            Store,
            8,
            "pickup after delivery damage: the store pays",
        ));
    }
    Err("no freight rule applies to these facts: record whether the seller is at fault, the customer caused damage, the customer returns for their own reason, or the payer is disputed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Payer::*;

    #[test]
    fn each_rule_decides_and_earlier_rules_win() {
        let base = FreightFacts::default();
        // (facts, outbound, return, rule)
        let cases: Vec<(FreightFacts, Payer, Payer, u8)> = vec![
            (
                FreightFacts {
                    agreed_payer: Some(Customer),
                    seller_at_fault: true,
                    ..base.clone()
                },
                Customer,
                Customer,
                1,
            ),
            // An agreement that cuts statutory rights does not decide.
            (
                FreightFacts {
                    agreed_payer: Some(Customer),
                    agreement_cuts_statutory_rights: true,
                    seller_at_fault: true,
                    ..base.clone()
                },
                Seller,
                Seller,
                2,
            ),
            (
                FreightFacts {
                    seller_at_fault: true,
                    customer_caused_damage: true,
                    ..base.clone()
                },
                Seller,
                Seller,
                2,
            ),
            (
                FreightFacts {
                    customer_caused_damage: true,
                    customer_own_reason: true,
                    free_shipping: true,
                    ..base.clone()
                },
                Customer,
                Customer,
                3,
            ),
            (
                FreightFacts {
                    customer_own_reason: true,
                    free_shipping: true,
                    no_reason_eligible: true,
                    ..base.clone()
                },
                Seller,
                Customer,
                4,
            ),
            (
                FreightFacts {
                    customer_own_reason: true,
                    free_shipping: true,
                    no_reason_eligible: false,
                    agreement_silent: true,
                    ..base.clone()
                },
                Customer,
                Customer,
                5,
            ),
            // Own reason without free shipping falls through to later rules.
            (
                FreightFacts {
                    customer_own_reason: true,
                    agreement_silent: true,
                    ..base.clone()
                },
                Seller,
                Seller,
                6,
            ),
            (
                FreightFacts {
                    payer_disputed: true,
                    pickup_after_delivery_damage: true,
                    ..base.clone()
                },
                PendingHeadOffice,
                PendingHeadOffice,
                7,
            ),
            (
                FreightFacts {
                    pickup_after_delivery_damage: true,
                    ..base.clone()
                },
                Store,
                Store,
                8,
            ),
        ];
        for (i, (facts, out, ret, rule)) in cases.into_iter().enumerate() {
            let d = decide(&facts).unwrap();
            assert_eq!(
                (d.outbound, d.return_leg, d.rule),
                (out, ret, rule),
                "case {i}: {}",
                d.rule_text
            );
        }
        assert!(decide(&base).is_err());
    }
}
