// Package injection scores text for prompt injection: instructions aimed
// at the model that reads the text rather than at the person who asked
// for it. It normalizes the text into views (decoded, unhidden,
// un-disguised), finds the patterns of its catalogue in them and combines
// their weights into a score.
package injection
