//! `stations-api import --demo N`: N synthetic stations for trying the API, the same N every
//! time: codes DEMO0000001..., pronounceable names, positions spread evenly over the globe.

use super::EachRecord;
use super::random::SplitMix64;
use super::records::Fields;

/// Hands `count` synthetic stations to `each`, numbered from 1.
pub fn generate(count: u64, each: &mut EachRecord<'_>) {
    let mut random = SplitMix64::new(0x5EED_0F57_A710_4500);
    for number in 1..=count {
        let code = format!("DEMO{number:07}");
        let name = format!(
            "{} {}",
            word(&mut random),
            SUFFIXES[random.below(SUFFIXES.len())]
        );
        // Uniform over the sphere's surface, not over the lat/lng rectangle.
        let lat = (2.0 * random.unit() - 1.0).asin().to_degrees();
        let lng = random.unit() * 360.0 - 180.0;
        let elevation = if random.unit() < 0.1 {
            None
        } else {
            Some((random.unit().powi(3) * 4000.0 - 50.0).round())
        };
        let fields = Fields {
            code: Some(code.into()),
            name: Some(name.into()),
            lat: Ok(Some((lat * 1e6).round() / 1e6)),
            lng: Ok(Some((lng * 1e6).round() / 1e6)),
            elevation_m: Ok(elevation),
        };
        if !each(number, b"", Ok(fields)) {
            return;
        }
    }
}

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ren", "sa", "to", "vel", "da", "ne", "ru", "bor", "li", "an", "os", "te",
    "wa",
];
const SUFFIXES: [&str; 6] = ["Central", "North", "Junction", "Harbour", "Halt", "Valley"];

fn word(random: &mut SplitMix64) -> String {
    let syllables = 2 + random.below(2);
    let mut word: String = (0..syllables)
        .map(|_| SYLLABLES[random.below(SYLLABLES.len())])
        .collect();
    if let Some(first) = word.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    word
}
